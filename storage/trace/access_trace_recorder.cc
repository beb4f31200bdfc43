#include "storage/trace/access_trace_recorder.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kvtier::storage {
namespace {

// The "page_columns" of the reference traces (../shared/reference/tier_policies/traces/).
constexpr char kPageColumns[] =
    R"json(["page_index(page_id=page-<i>)","layer","token_start","token_end","head_group",)json"
    R"json("size_bytes"])json";

// The schemes kvtier-replay's loader accepts (tools/replay/cost_model.h, DecodePenaltyMs).
bool IsKnownQuant(absl::string_view quant) {
  return quant == "fp16" || quant == "fp8" || quant == "int4" || quant == "int2";
}

void AppendJsonString(absl::string_view text, std::string& out) {
  out.push_back('"');
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

// Writes a file through a buffer so that a trace of millions of accesses never exists
// as one string. The first error sticks; later calls are no-ops.
class BufferedFile {
 public:
  static constexpr size_t kBufferBytes = size_t{1} << 20;

  BufferedFile(std::string path, std::string what)
      : path_(std::move(path)), what_(std::move(what)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) status_ = Error("cannot create");
    buffer_.reserve(kBufferBytes + 256);
  }
  ~BufferedFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  BufferedFile(const BufferedFile&) = delete;
  BufferedFile& operator=(const BufferedFile&) = delete;

  // The caller appends to buffer() and then calls MaybeDrain().
  std::string& buffer() { return buffer_; }
  void MaybeDrain() {
    if (buffer_.size() >= kBufferBytes) Drain();
  }

  // Drains the buffer, fsyncs and closes.
  absl::Status Finish() {
    Drain();
    if (status_.ok() && ::fsync(fd_) != 0) status_ = Error("cannot fsync");
    if (fd_ >= 0 && ::close(fd_) != 0 && status_.ok()) status_ = Error("cannot close");
    fd_ = -1;
    return status_;
  }

 private:
  absl::Status Error(absl::string_view action) const {
    return absl::ErrnoToStatus(errno, absl::StrCat(what_, ": ", action, " ", path_));
  }

  void Drain() {
    absl::string_view rest = buffer_;
    while (status_.ok() && !rest.empty()) {
      const ssize_t n = ::write(fd_, rest.data(), rest.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        status_ = Error("cannot write");
      } else {
        rest.remove_prefix(static_cast<size_t>(n));
      }
    }
    buffer_.clear();
  }

  const std::string path_;
  const std::string what_;
  int fd_ = -1;
  std::string buffer_;
  absl::Status status_;
};

// Best effort: makes the rename durable. Some file systems refuse fsync on directories.
void SyncParentDirectory(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

AccessTraceRecorder::AccessTraceRecorder(std::string path, std::string workload, std::string quant,
                                         int64_t max_accesses)
    : path_(std::move(path)),
      workload_(std::move(workload)),
      quant_(std::move(quant)),
      max_accesses_(std::clamp<int64_t>(max_accesses, 0, kMaxAccessesLimit)) {}

void AccessTraceRecorder::RecordAccess(const TracePage& page) {
  const int64_t size = std::clamp<int64_t>(page.size_bytes, 1, kMaxPageBytes);
  absl::MutexLock lock(&mu_);
  if (accesses_ >= max_accesses_) {
    ++dropped_;
    return;
  }
  const auto [it, inserted] =
      index_of_key_.try_emplace(page.key, static_cast<uint32_t>(pages_.size()));
  if (inserted) {
    pages_.push_back(PageRow{page.layer, page.head_group, page.token_start, page.token_end, size});
  } else {
    PageRow& row = pages_[it->second];
    row.token_start = std::min(row.token_start, page.token_start);
    row.token_end = std::max(row.token_end, page.token_end);
    row.size_bytes = std::max(row.size_bytes, size);
  }
  pending_.push_back(it->second);
  ++accesses_;
}

absl::Status AccessTraceRecorder::Flush() {
  absl::MutexLock flush_lock(&flush_mu_);
  if (!IsKnownQuant(quant_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("access trace ", path_, ": \"quant\" is \"", quant_,
                     "\"; kvtier-replay knows fp16, fp8, int4 and int2"));
  }
  // Accesses never change once recorded, so the new ones move out in O(1); page rows can
  // still grow, so the (smaller) page table is copied.
  std::vector<uint32_t> fresh;
  std::vector<PageRow> pages;
  {
    absl::MutexLock lock(&mu_);
    fresh.swap(pending_);
    pages = pages_;
  }
  flushed_.insert(flushed_.end(), fresh.begin(), fresh.end());

  const std::string tmp_path = absl::StrCat(path_, ".tmp");
  BufferedFile file(tmp_path, absl::StrCat("access trace ", path_));
  std::string& out = file.buffer();
  out += R"({"workload":)";
  AppendJsonString(workload_, out);
  out += R"(,"quant":)";
  AppendJsonString(quant_, out);
  absl::StrAppend(&out, R"(,"page_columns":)", kPageColumns, R"(,"pages":[)");
  for (size_t i = 0; i < pages.size(); ++i) {
    const PageRow& p = pages[i];
    absl::StrAppend(&out, i == 0 ? "[" : ",[", i, ",", p.layer, ",", p.token_start, ",",
                    p.token_end, ",", p.head_group, ",", p.size_bytes, "]");
    file.MaybeDrain();
  }
  out += R"(],"accesses":[)";
  for (size_t i = 0; i < flushed_.size(); ++i) {
    if (i != 0) out.push_back(',');
    absl::StrAppend(&out, flushed_[i]);
    file.MaybeDrain();
  }
  out += "]}\n";
  if (absl::Status status = file.Finish(); !status.ok()) {
    ::unlink(tmp_path.c_str());
    return status;
  }
  if (::rename(tmp_path.c_str(), path_.c_str()) != 0) {
    const int error = errno;
    ::unlink(tmp_path.c_str());
    return absl::ErrnoToStatus(
        error, absl::StrCat("access trace ", path_, ": cannot rename ", tmp_path, " to ", path_));
  }
  SyncParentDirectory(path_);
  return absl::OkStatus();
}

int64_t AccessTraceRecorder::accesses() const {
  absl::MutexLock lock(&mu_);
  return accesses_;
}

int64_t AccessTraceRecorder::pages() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(pages_.size());
}

int64_t AccessTraceRecorder::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace kvtier::storage
