// kvtierctl stats: every field of the daemon's StatsResponse.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"
#include "tools/kvtierctl/output.h"

namespace kvtier::ctl {
namespace {

// One field's value as text: scalars as they are (strings unquoted), repeated fields and
// messages in protobuf text format, comma-separated.
std::string FieldText(const google::protobuf::Message& message,
                      const google::protobuf::FieldDescriptor* field) {
  const google::protobuf::Reflection* r = message.GetReflection();
  if (!field->is_repeated() && field->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
    return r->GetString(message, field);
  }
  std::string out;
  const int n = field->is_repeated() ? r->FieldSize(message, field) : 1;
  for (int i = 0; i < n; ++i) {
    std::string value;
    google::protobuf::TextFormat::Printer printer;
    printer.SetSingleLineMode(true);
    printer.PrintFieldValueToString(message, field, field->is_repeated() ? i : -1, &value);
    absl::StrAppend(&out, i > 0 ? ", " : "", value);
  }
  return out;
}

}  // namespace

int RunStats(const std::vector<std::string>& args) {
  if (!args.empty()) return UsageFailure("stats", "takes no arguments", "kvtierctl stats [--json]");
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectFromFlags(kOperatorDeadline);
  if (!client.ok()) return RpcFailure("stats", client.status());
  absl::StatusOr<v1::StatsResponse> stats = (*client)->Stats();
  if (!stats.ok()) return RpcFailure("stats", stats.status());
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(*stats);
    return 0;
  }
  // Field by field through reflection, so that a field added to StatsResponse shows up here
  // without a change to kvtierctl; the tiers get a table of their own.
  const google::protobuf::Descriptor* descriptor = stats->GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    if (field->name() == "tiers") continue;
    std::printf("%-18s %s\n", field->name().c_str(), FieldText(*stats, field).c_str());
  }
  std::printf("\n%s", TierTable(TierUseOf(*stats).tiers()).c_str());
  return 0;
}

}  // namespace kvtier::ctl
