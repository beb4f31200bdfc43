#include "server/http_server.h"

#include <CivetServer.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>
#include <prometheus/text_serializer.h>
#include <zlib.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kvtier::server {
namespace {

// The content type of the Prometheus text exposition format.
constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

absl::string_view RequestPath(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  return info != nullptr && info->local_uri != nullptr ? absl::string_view(info->local_uri)
                                                       : absl::string_view();
}

void SendResponse(mg_connection* conn, int code, absl::string_view reason,
                  absl::string_view content_type, absl::string_view body,
                  absl::string_view extra_headers = "") {
  const std::string head =
      absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                   "\r\nContent-Length: ", body.size(), "\r\n", extra_headers, "\r\n");
  mg_write(conn, head.data(), head.size());
  mg_write(conn, body.data(), body.size());
}

void SendNotFound(mg_connection* conn) {
  SendResponse(conn, 404, "Not Found", "text/plain; charset=utf-8",
               "404 not found: this port serves /metrics and /statusz\n");
}

// `in` as a gzip member, or empty when zlib fails.
std::string GzipCompress(absl::string_view in) {
  z_stream z;
  std::memset(&z, 0, sizeof(z));
  // 15 + 16: a 32 KiB window with a gzip header and trailer.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return std::string();
  }
  std::string out(deflateBound(&z, in.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int result = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return result == Z_STREAM_END ? out : std::string();
}

}  // namespace

// The three request handlers and the scrape counters the Exposer used to export.
class MetricsHttpServer::Handlers {
 public:
  Handlers(std::shared_ptr<prometheus::Collectable> metrics, PageFn statusz)
      : metrics_(std::move(metrics)),
        statusz_(std::move(statusz)),
        scrape_registry_(std::make_shared<prometheus::Registry>()),
        bytes_transferred_(prometheus::BuildCounter()
                               .Name("exposer_transferred_bytes_total")
                               .Help("Transferred bytes to metrics services")
                               .Register(*scrape_registry_)
                               .Add({})),
        scrapes_(prometheus::BuildCounter()
                     .Name("exposer_scrapes_total")
                     .Help("Number of times metrics were scraped")
                     .Register(*scrape_registry_)
                     .Add({})),
        request_latencies_(
            prometheus::BuildSummary()
                .Name("exposer_request_latencies")
                .Help("Latencies of serving scrape requests, in microseconds")
                .Register(*scrape_registry_)
                .Add({}, prometheus::Summary::Quantiles{{0.5, 0.05}, {0.9, 0.01}, {0.99, 0.001}})),
        metrics_handler_(this),
        statusz_handler_(this),
        not_found_handler_() {}

  CivetHandler* metrics_handler() { return &metrics_handler_; }
  CivetHandler* statusz_handler() { return &statusz_handler_; }
  CivetHandler* not_found_handler() { return &not_found_handler_; }

 private:
  // civetweb hands "/metrics/x" to the "/metrics" handler too: only the exact path is served.
  class MetricsHandler final : public CivetHandler {
   public:
    explicit MetricsHandler(Handlers* owner) : owner_(owner) {}
    using CivetHandler::handleGet;
    bool handleGet(CivetServer*, mg_connection* conn) override {
      if (RequestPath(conn) != "/metrics") {
        SendNotFound(conn);
        return true;
      }
      owner_->ServeMetrics(conn);
      return true;
    }

   private:
    Handlers* const owner_;
  };

  class StatuszHandler final : public CivetHandler {
   public:
    explicit StatuszHandler(Handlers* owner) : owner_(owner) {}
    using CivetHandler::handleGet;
    bool handleGet(CivetServer*, mg_connection* conn) override {
      if (RequestPath(conn) != "/statusz") {
        SendNotFound(conn);
        return true;
      }
      SendResponse(conn, 200, "OK", "text/html; charset=utf-8", owner_->statusz_(),
                   "Cache-Control: no-store\r\n");
      return true;
    }

   private:
    Handlers* const owner_;
  };

  class NotFoundHandler final : public CivetHandler {
   public:
    using CivetHandler::handleGet;
    bool handleGet(CivetServer*, mg_connection* conn) override {
      SendNotFound(conn);
      return true;
    }
  };

  // As prometheus-cpp 1.0's MetricsHandler: the scrape counters first (as they were before
  // this scrape), then the daemon's metrics; the counters then count this scrape.
  void ServeMetrics(mg_connection* conn) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<prometheus::MetricFamily> families = scrape_registry_->Collect();
    std::vector<prometheus::MetricFamily> daemon = metrics_->Collect();
    families.insert(families.end(), std::make_move_iterator(daemon.begin()),
                    std::make_move_iterator(daemon.end()));
    std::string body = prometheus::TextSerializer().Serialize(families);
    const char* accept = mg_get_header(conn, "Accept-Encoding");
    std::string extra_headers;
    if (accept != nullptr && absl::StrContains(absl::AsciiStrToLower(accept), "gzip")) {
      if (std::string compressed = GzipCompress(body); !compressed.empty()) {
        body = std::move(compressed);
        extra_headers = "Content-Encoding: gzip\r\n";
      }
    }
    SendResponse(conn, 200, "OK", kMetricsContentType, body, extra_headers);
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - start);
    request_latencies_.Observe(static_cast<double>(micros.count()));
    bytes_transferred_.Increment(static_cast<double>(body.size()));
    scrapes_.Increment();
  }

  const std::shared_ptr<prometheus::Collectable> metrics_;
  const PageFn statusz_;
  const std::shared_ptr<prometheus::Registry> scrape_registry_;
  prometheus::Counter& bytes_transferred_;
  prometheus::Counter& scrapes_;
  prometheus::Summary& request_latencies_;
  MetricsHandler metrics_handler_;
  StatuszHandler statusz_handler_;
  NotFoundHandler not_found_handler_;
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, std::shared_ptr<prometheus::Collectable> metrics, PageFn statusz) {
  std::unique_ptr<MetricsHttpServer> http(new MetricsHttpServer());
  http->handlers_ = std::make_unique<Handlers>(std::move(metrics), std::move(statusz));
  // A browser may hold idle connections open: more workers than the Exposer's 2, and a
  // request timeout so that an idle one is dropped.
  const std::vector<std::string> options = {"listening_ports",    address, "num_threads", "4",
                                            "request_timeout_ms", "10000"};
  try {
    http->server_ = std::make_unique<CivetServer>(options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", address, ": ", e.what()));
  }
  const std::vector<int> ports = http->server_->getListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", address, ": no port"));
  }
  http->port_ = ports.front();
  // civetweb prefers an exact match, then the longest prefix: "/" catches the rest.
  http->server_->addHandler("/metrics", http->handlers_->metrics_handler());
  http->server_->addHandler("/statusz", http->handlers_->statusz_handler());
  http->server_->addHandler("/", http->handlers_->not_found_handler());
  return http;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (server_ != nullptr) server_->close();
}

}  // namespace kvtier::server
