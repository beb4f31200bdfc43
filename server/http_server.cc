#include "server/http_server.h"

#include <CivetServer.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace kvtier::server {
namespace {

// The content type of the Prometheus text exposition format.
constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";

absl::string_view RequestPath(const mg_request_info* info) {
  return info != nullptr && info->local_uri != nullptr ? absl::string_view(info->local_uri)
                                                       : absl::string_view();
}

// Writes a whole response. civetweb closes the connection after each request (keep-alive is
// off), and every response says so. A HEAD request gets the headers GET would have had.
void SendResponse(mg_connection* conn, bool head_only, int code, absl::string_view reason,
                  absl::string_view content_type, absl::string_view body,
                  absl::string_view extra_headers = "") {
  const std::string head = absl::StrCat(
      "HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n", extra_headers, "\r\n");
  mg_write(conn, head.data(), head.size());
  if (!head_only) mg_write(conn, body.data(), body.size());
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

bool AcceptsGzip(absl::string_view accept_encoding) {
  // RFC 9110 12.5.3: "coding;q=value" items separated by commas; q=0 means not acceptable,
  // a missing q means 1, and "*" stands for every coding not listed.
  std::optional<bool> gzip;
  bool star = false;
  for (absl::string_view item : absl::StrSplit(accept_encoding, ',')) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ';');
    const std::string coding = absl::AsciiStrToLower(absl::StripAsciiWhitespace(parts[0]));
    double q = 1;
    for (size_t i = 1; i < parts.size(); ++i) {
      absl::string_view param = absl::StripAsciiWhitespace(parts[i]);
      if (param.size() < 2 || absl::ascii_tolower(param[0]) != 'q') continue;
      param.remove_prefix(1);
      param = absl::StripLeadingAsciiWhitespace(param);
      if (!absl::ConsumePrefix(&param, "=")) continue;
      double value = 0;
      // A q-value that does not parse makes the item unacceptable.
      q = absl::SimpleAtod(absl::StripAsciiWhitespace(param), &value) ? value : 0;
    }
    if (coding == "gzip" || coding == "x-gzip") {
      gzip = gzip.value_or(false) || q > 0;
    } else if (coding == "*") {
      star = q > 0;
    }
  }
  return gzip.has_value() ? *gzip : star;
}

// The request handler and the scrape counters the Exposer used to export.
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
                .Add({}, prometheus::Summary::Quantiles{{0.5, 0.05}, {0.9, 0.01}, {0.99, 0.001}})) {
  }

  // civetweb's request handler (mg_request_handler) for every path. Exceptions stop here:
  // one escaping into civetweb's C code would terminate the process.
  static int Handle(mg_connection* conn, void* cbdata) {
    const mg_request_info* info = mg_get_request_info(conn);
    const bool head_only = info != nullptr && info->request_method != nullptr &&
                           std::strcmp(info->request_method, "HEAD") == 0;
    try {
      return static_cast<Handlers*>(cbdata)->Serve(conn, info, head_only);
    } catch (const std::exception& e) {
      spdlog::error("HTTP {}: {}", std::string(RequestPath(info)), e.what());
    } catch (...) {
      spdlog::error("HTTP {}: unknown exception", std::string(RequestPath(info)));
    }
    SendResponse(conn, head_only, 500, "Internal Server Error", kTextContentType,
                 "500 internal error: rendering the page failed (see the daemon's log)\n");
    return 500;
  }

 private:
  // Exact paths only: "/metrics/x" is 404. GET and HEAD; other methods 405.
  int Serve(mg_connection* conn, const mg_request_info* info, bool head_only) {
    const absl::string_view path = RequestPath(info);
    if (path != "/metrics" && path != "/statusz") {
      SendResponse(conn, head_only, 404, "Not Found", kTextContentType,
                   "404 not found: this port serves /metrics and /statusz\n");
      return 404;
    }
    const absl::string_view method = info->request_method != nullptr
                                         ? absl::string_view(info->request_method)
                                         : absl::string_view();
    if (method != "GET" && method != "HEAD") {
      SendResponse(conn, false, 405, "Method Not Allowed", kTextContentType,
                   absl::StrCat("405 method not allowed: ", path, " answers GET and HEAD\n"),
                   "Allow: GET, HEAD\r\n");
      return 405;
    }
    if (path == "/statusz") {
      SendResponse(conn, head_only, 200, "OK", "text/html; charset=utf-8", statusz_(),
                   "Cache-Control: no-store\r\n");
      return 200;
    }
    ServeMetrics(conn, head_only);
    return 200;
  }

  // As prometheus-cpp 1.0's MetricsHandler: the scrape counters first (as they were before
  // this scrape), then the daemon's metrics; the counters then count this scrape. HEAD is
  // answered with the same headers and is not counted.
  void ServeMetrics(mg_connection* conn, bool head_only) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<prometheus::MetricFamily> families = scrape_registry_->Collect();
    std::vector<prometheus::MetricFamily> daemon = metrics_->Collect();
    families.insert(families.end(), std::make_move_iterator(daemon.begin()),
                    std::make_move_iterator(daemon.end()));
    std::string body = prometheus::TextSerializer().Serialize(families);
    const char* accept = mg_get_header(conn, "Accept-Encoding");
    // The body depends on Accept-Encoding: caches must key on it.
    std::string extra_headers = "Vary: Accept-Encoding\r\n";
    if (accept != nullptr && AcceptsGzip(accept)) {
      if (std::string compressed = GzipCompress(body); !compressed.empty()) {
        body = std::move(compressed);
        absl::StrAppend(&extra_headers, "Content-Encoding: gzip\r\n");
      }
    }
    SendResponse(conn, head_only, 200, "OK", kMetricsContentType, body, extra_headers);
    if (head_only) return;
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
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, std::shared_ptr<prometheus::Collectable> metrics, PageFn statusz) {
  std::unique_ptr<MetricsHttpServer> http(new MetricsHttpServer());
  http->handlers_ = std::make_unique<Handlers>(std::move(metrics), std::move(statusz));
  // Each connection holds a worker thread until its request has been read, so idle
  // connections (a browser's spare ones, a port scanner's) each pin one: 16 workers, and a
  // 2 s request timeout that drops a connection which has not sent its request by then, so
  // that a scrape waits at most that long even when every worker is pinned.
  const std::vector<std::string> options = {"listening_ports",    address, "num_threads", "16",
                                            "request_timeout_ms", "2000"};
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
  // "/" is a prefix of every path: one handler sees every request, whatever its method
  // (a CivetHandler leaves methods it has no handle* for to civetweb). CivetServer hands out
  // its context only as const; mg_set_request_handler is the C API's way to add a handler.
  mg_set_request_handler(const_cast<mg_context*>(http->server_->getContext()), "/",
                         &Handlers::Handle, http->handlers_.get());
  return http;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (server_ != nullptr) server_->close();
}

}  // namespace kvtier::server
