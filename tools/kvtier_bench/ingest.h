// kvtier-bench ingest: gRPC offload/promote throughput beside Redis and memcpy (ingest.cc).
#ifndef KVTIER_TOOLS_KVTIER_BENCH_INGEST_H_
#define KVTIER_TOOLS_KVTIER_BENCH_INGEST_H_

#include <cstdint>
#include <string>

namespace kvtier::bench {

struct IngestOptions {
  std::string server;        // kvtierd target ("unix:///path.sock" or "host:port"); "" skips
  std::string transport;     // label of the kvtier transport in the output ("unix", "tcp")
  std::string redis_socket;  // Redis Unix socket; "" uses redis_port
  int redis_port = 0;        // Redis TCP port on 127.0.0.1; 0 with no socket skips Redis
  int64_t rows = 8192;
  int reps = 3;
};

// Prints one JSON line per measurement; returns the process exit status.
int RunIngest(const IngestOptions& options);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_KVTIER_BENCH_INGEST_H_
