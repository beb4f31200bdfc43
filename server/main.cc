// kvtierd: the kvtier daemon. With no flags it serves on a Unix socket and 127.0.0.1 with
// a data directory under the working directory (DESIGN.md §5). `--flagfile=FILE` reads
// flags from a file.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gpu/scorer.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/repair_log.h"
#include "server/repair_pipeline.h"
#include "server/service.h"
#include "server/session_registry.h"
#include "server/statusz.h"
#include "storage/kv_db.h"
#include "storage/tier_manager.h"
#include "storage/trace/access_trace_recorder.h"

ABSL_FLAG(std::string, unix_socket, "kvtier-data/kvtierd.sock",
          "Unix domain socket to serve on; empty disables it");
ABSL_FLAG(std::string, listen, "127.0.0.1:50551",
          "TCP address to serve on (port 0 picks a free port); empty disables it");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9551",
          "HTTP address serving Prometheus /metrics and the /statusz page (port 0 picks one); "
          "empty disables");
ABSL_FLAG(std::string, data_dir, "kvtier-data", "Directory for the daemon's files");
ABSL_FLAG(std::string, ready_file, "",
          "When set, written atomically once every listener is up: JSON with pid, unix_socket, "
          "tcp_port, metrics_port");
ABSL_FLAG(uint64_t, host_capacity_bytes, uint64_t{8} << 30,
          "Bytes of host RAM for payloads, score indexes and slot metadata; past the high "
          "watermark the demoter moves cold payloads to the nvme tier");
ABSL_FLAG(uint64_t, disk_capacity_bytes, uint64_t{64} << 30,
          "Bytes of the nvme tier (RocksDB under --data_dir/db)");
ABSL_FLAG(std::string, durability, "wal",
          "What an acknowledged write survives: none (nothing survives a restart), wal "
          "(a killed process), sync (a power loss: fsync per acknowledged change)");
ABSL_FLAG(double, high_watermark, 0.90, "Host RAM fraction at which the demoter starts");
ABSL_FLAG(double, low_watermark, 0.80, "Host RAM fraction the demoter brings use back to");
ABSL_FLAG(std::string, placement_policy, "lru",
          "Which segments leave host RAM first: lru, windowed_recency, heavy_hitter, "
          "cost_aware, predictive or regret_aware (docs/STORAGE.md)");
ABSL_FLAG(std::string, cold_format, "raw",
          "Encoding of payloads demoted to disk: raw (bit-exact), fp8, int8 or int4 "
          "(docs/QUANTIZATION.md)");
ABSL_FLAG(int64_t, cold_guard_rows, 256,
          "Segments holding one of a session's most recent N positions are demoted raw");
ABSL_FLAG(uint64_t, tenant_quota_bytes, 0, "Bytes each tenant may hold (0: unlimited)");
ABSL_FLAG(std::string, tenant_quotas, "",
          "Per-tenant quotas overriding --tenant_quota_bytes: tenant=bytes[,tenant=bytes...]");
ABSL_FLAG(uint64_t, block_cache_bytes, uint64_t{64} << 20, "RocksDB block cache size");
ABSL_FLAG(std::string, trace_file, "",
          "When set, segment accesses are recorded and written there (every 10 s and at "
          "shutdown) as an access trace for kvtier-replay");
ABSL_FLAG(int32_t, segment_rows, 256, "Rows per storage segment (a multiple of 16, at most 1024)");
ABSL_FLAG(int64_t, default_ttl_seconds, 3600, "Idle TTL of sessions opened with ttl_seconds 0");
ABSL_FLAG(int64_t, max_ttl_seconds, 7 * 24 * 3600, "Largest ttl_seconds a session may ask for");
ABSL_FLAG(int64_t, max_sessions, 4096, "Open sessions at most");
ABSL_FLAG(int32_t, max_request_bytes, 256 << 20,
          "Largest request message (a Repair signal of 28 layers x 28 heads x 64 tokens x 128 "
          "float32 is 25.7 MiB)");
ABSL_FLAG(int64_t, fast_min_candidates, 16384,
          "Repairs with SCORING_MODE_AUTO score exactly up to this many candidate rows and use "
          "the fast mode above (docs/FAST_MODE.md)");
ABSL_FLAG(int64_t, fast_first_round, 256,
          "Fast mode: fewest rows the first rescoring round scores exactly (docs/FAST_MODE.md)");
ABSL_FLAG(int64_t, fast_oversample, 2,
          "Fast mode: rows rescored first per anchor that K needs; more raises recall@K against "
          "the exact mode and costs rescoring time (docs/FAST_MODE.md)");
ABSL_FLAG(int32_t, fast_sample_rows, 256,
          "Fast mode: rows sampled to estimate the softmax normalizer (docs/FAST_MODE.md)");
ABSL_FLAG(int32_t, scorer_threads, 0, "Threads of the CPU scorer (0: one per hardware thread)");

namespace {

constexpr char kVersion[] = "0.1.0";

bool WriteReadyFile(const std::string& path, const std::string& unix_socket, int tcp_port,
                    int metrics_port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    out << "{\"pid\": " << getpid() << ", \"unix_socket\": \"" << unix_socket
        << "\", \"tcp_port\": " << tcp_port << ", \"metrics_port\": " << metrics_port << "}\n";
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// Removes a stale socket file left by a previous run; refuses to delete anything else.
bool PrepareSocketPath(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      spdlog::error("--unix_socket {} exists and is not a socket", path);
      return false;
    }
    unlink(path.c_str());
  }
  return true;
}

// Parses --tenant_quotas.
bool ParseTenantQuotas(const std::string& text,
                       absl::flat_hash_map<std::string, uint64_t>* quotas) {
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    uint64_t bytes = 0;
    if (kv.first.empty() || !absl::SimpleAtoi(kv.second, &bytes)) {
      spdlog::error("--tenant_quotas: '{}' is not tenant=bytes", std::string(item));
      return false;
    }
    (*quotas)[kv.first] = bytes;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // The one start time: kvtier_start_time_seconds, Stats.uptime_seconds and /statusz's uptime
  // all count from here, so recovery is part of the uptime.
  const absl::Time started = absl::Now();
  absl::SetProgramUsageMessage("kvtierd: KV-cache tier server with KV repair");
  absl::ParseCommandLine(argc, argv);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ kvtierd: %v");

  // SIGINT/SIGTERM are taken by sigwait in main; block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const int32_t segment_rows = absl::GetFlag(FLAGS_segment_rows);
  // The scorer's per-thread score tile grows with segment rows (docs/API.md, limits).
  if (segment_rows < 16 || segment_rows % 16 != 0 || segment_rows > 1024) {
    spdlog::error("--segment_rows must be a multiple of 16 in [16, 1024], got {}", segment_rows);
    return 2;
  }
  kvtier::server::PipelineOptions pipeline_options;
  pipeline_options.fast_min_candidates = absl::GetFlag(FLAGS_fast_min_candidates);
  pipeline_options.fast_first_round = absl::GetFlag(FLAGS_fast_first_round);
  pipeline_options.fast_oversample = absl::GetFlag(FLAGS_fast_oversample);
  pipeline_options.fast_sample_rows = absl::GetFlag(FLAGS_fast_sample_rows);
  if (absl::Status s = kvtier::server::CheckPipelineOptions(pipeline_options); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    spdlog::error("cannot create --data_dir {}: {}", data_dir, ec.message());
    return 1;
  }

  std::unique_ptr<kvtier::scorer::Scorer> scorer =
      kvtier::scorer::MakeCpuScorer(absl::GetFlag(FLAGS_scorer_threads));
  kvtier::server::Metrics metrics(std::string(scorer->name()), started);

  // The tiers: host RAM and RocksDB under data_dir/db.
  namespace storage = kvtier::storage;
  absl::StatusOr<storage::Durability> durability =
      storage::ParseDurability(absl::GetFlag(FLAGS_durability), "--durability");
  absl::StatusOr<storage::quant::Format> cold_format =
      storage::quant::ParseFormat(absl::GetFlag(FLAGS_cold_format));
  if (!durability.ok() || !cold_format.ok()) {
    spdlog::error("{}", std::string(durability.ok() ? cold_format.status().message()
                                                    : durability.status().message()));
    return 2;
  }
  storage::TierManagerOptions tier_options;
  tier_options.host_capacity_bytes = absl::GetFlag(FLAGS_host_capacity_bytes);
  tier_options.disk_capacity_bytes = absl::GetFlag(FLAGS_disk_capacity_bytes);
  tier_options.high_watermark = absl::GetFlag(FLAGS_high_watermark);
  tier_options.low_watermark = absl::GetFlag(FLAGS_low_watermark);
  tier_options.policy = absl::GetFlag(FLAGS_placement_policy);
  tier_options.cold_format = *cold_format;
  tier_options.guard_rows = absl::GetFlag(FLAGS_cold_guard_rows);
  tier_options.default_tenant_quota_bytes = absl::GetFlag(FLAGS_tenant_quota_bytes);
  if (!ParseTenantQuotas(absl::GetFlag(FLAGS_tenant_quotas), &tier_options.tenant_quota_bytes)) {
    return 2;
  }
  if (absl::Status s = storage::ValidateTierManagerOptions(tier_options); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  storage::KvDbOptions db_options;
  db_options.path = (std::filesystem::path(data_dir) / "db").string();
  db_options.durability = *durability;
  db_options.block_cache_bytes = absl::GetFlag(FLAGS_block_cache_bytes);
  absl::StatusOr<std::unique_ptr<storage::KvDb>> db = storage::KvDb::Open(db_options);
  if (!db.ok()) {
    spdlog::error("cannot open the nvme tier: {}", std::string(db.status().message()));
    return 1;
  }
  if (*durability == storage::Durability::kNone) {
    // Nothing is recovered in durability none: what a previous run left is garbage.
    if (absl::Status s = (*db)->Clear(); !s.ok()) {
      spdlog::error("cannot clear {}: {}", db_options.path, std::string(s.message()));
      return 1;
    }
  }
  (*db)->set_latency_observer(
      [&metrics](const char* op, double seconds) { metrics.ObserveDbOp(op, seconds); });
  absl::StatusOr<std::unique_ptr<storage::TierManager>> tiers =
      storage::TierManager::Create(tier_options, std::move(*db));
  if (!tiers.ok()) {
    spdlog::error("{}", std::string(tiers.status().message()));
    return 2;
  }
  std::unique_ptr<storage::AccessTraceRecorder> recorder;
  if (const std::string trace = absl::GetFlag(FLAGS_trace_file); !trace.empty()) {
    recorder = std::make_unique<storage::AccessTraceRecorder>(trace, "kvtierd");
    (*tiers)->set_recorder(recorder.get());
  }

  kvtier::server::RegistryOptions registry_options;
  registry_options.segment_rows = segment_rows;
  registry_options.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  registry_options.default_ttl = absl::Seconds(absl::GetFlag(FLAGS_default_ttl_seconds));
  registry_options.max_ttl = absl::Seconds(absl::GetFlag(FLAGS_max_ttl_seconds));
  kvtier::server::SessionRegistry registry(tiers->get(), registry_options);
  {
    const auto start = std::chrono::steady_clock::now();
    int64_t data_loss = 0;
    absl::StatusOr<int64_t> recovered = registry.Recover(&data_loss);
    if (!recovered.ok()) {
      spdlog::error("recovery failed: {}", std::string(recovered.status().message()));
      return 1;
    }
    spdlog::info("recovered {} session(s) from {} in {:.3f} s ({} damaged record(s) skipped)",
                 *recovered, db_options.path,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                 data_loss);
  }
  (*tiers)->Start();
  kvtier::server::RepairPipeline pipeline(scorer.get(), pipeline_options);
  kvtier::server::RepairLog repair_log;
  kvtier::server::KvTierService service(&registry, tiers->get(), &pipeline, &metrics, kVersion,
                                        started, &repair_log);
  const kvtier::server::StatusPage status_page({.registry = &registry,
                                                .tiers = tiers->get(),
                                                .repair_log = &repair_log,
                                                .version = kVersion,
                                                .scorer = std::string(scorer->name()),
                                                .started = started});

  // /metrics and /statusz (server/http_server.h).
  std::unique_ptr<kvtier::server::MetricsHttpServer> http;
  int metrics_port = 0;
  if (const std::string addr = absl::GetFlag(FLAGS_metrics_listen); !addr.empty()) {
    absl::StatusOr<std::unique_ptr<kvtier::server::MetricsHttpServer>> started =
        kvtier::server::MetricsHttpServer::Start(addr, metrics.registry(),
                                                 [&status_page] { return status_page.Render(); });
    if (!started.ok()) {
      spdlog::error("{}", std::string(started.status().message()));
      return 1;
    }
    http = std::move(*started);
    metrics_port = http->port();
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string unix_socket = absl::GetFlag(FLAGS_unix_socket);
  if (!unix_socket.empty()) {
    if (!PrepareSocketPath(unix_socket)) return 1;
    builder.AddListeningPort("unix:" + unix_socket, grpc::InsecureServerCredentials());
  }
  int tcp_port = 0;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  if (!listen.empty()) {
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &tcp_port);
  }
  if (unix_socket.empty() && listen.empty()) {
    spdlog::error("nothing to serve on: --unix_socket and --listen are both empty");
    return 2;
  }
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_request_bytes));
  builder.SetMaxSendMessageSize(absl::GetFlag(FLAGS_max_request_bytes));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || (!listen.empty() && tcp_port == 0)) {
    spdlog::error("cannot start the gRPC server (is {} or {} in use?)", listen, unix_socket);
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);

  spdlog::info(
      "ready: unix={} tcp={} metrics={} scorer={} host_capacity={} disk_capacity={} "
      "durability={} policy={} cold_format={} version={}",
      unix_socket.empty() ? "-" : unix_socket,
      listen.empty() ? "-" : absl::StrCat(listen.substr(0, listen.rfind(':')), ":", tcp_port),
      metrics_port, scorer->name(), tier_options.host_capacity_bytes,
      tier_options.disk_capacity_bytes, std::string(storage::DurabilityName(*durability)),
      tier_options.policy, std::string(storage::quant::FormatName(tier_options.cold_format)),
      kVersion);
  if (const std::string ready = absl::GetFlag(FLAGS_ready_file); !ready.empty()) {
    if (!WriteReadyFile(ready, unix_socket, tcp_port, metrics_port)) {
      spdlog::error("cannot write --ready_file {}", ready);
      return 1;
    }
  }

  // Expires idle sessions and refreshes gauges once a second until shutdown.
  absl::Notification stopping;
  auto flush_trace = [&recorder] {
    if (recorder == nullptr) return;
    if (absl::Status s = recorder->Flush(); !s.ok()) {
      spdlog::warn("--trace_file: {}", std::string(s.message()));
    }
  };
  std::thread maintainer([&] {
    int64_t ticks = 0;
    while (!stopping.WaitForNotificationWithTimeout(absl::Seconds(1))) {
      service.Maintain(absl::Now());
      if (++ticks % 10 == 0) flush_trace();
    }
  });

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("signal {}: draining in-flight RPCs", signal_number);
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  server->Wait();
  stopping.Notify();
  maintainer.join();
  (*tiers)->Stop();
  flush_trace();
  (*tiers)->set_recorder(nullptr);
  spdlog::info("stopped");
  return 0;
}
