// The HTTP server of kvtierd's metrics port (--metrics_listen): Prometheus text on
// /metrics and the operator's status page on /statusz. prometheus-cpp's Exposer serves
// only /metrics, so the port is served here with civetweb (the library the Exposer is
// built on) and /metrics is rendered the way the Exposer renders it.
#ifndef KVTIER_SERVER_HTTP_SERVER_H_
#define KVTIER_SERVER_HTTP_SERVER_H_

#include <prometheus/collectable.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

class CivetServer;

namespace kvtier::server {

// Thread-safe: civetweb calls the handlers from its worker threads; `metrics` and the page
// callback must be safe to call concurrently. Stops serving when destroyed.
class MetricsHttpServer {
 public:
  // Renders the body of /statusz (HTML).
  using PageFn = std::function<std::string()>;

  // Serves on `address` ("host:port", port 0 picks a free one):
  //   GET /metrics  `metrics` in the Prometheus text format 0.0.4 (gzip when the client's
  //                 Accept-Encoding accepts it; Vary: Accept-Encoding), plus the exposer_*
  //                 scrape counters the Exposer reported;
  //   GET /statusz  statusz() as text/html;
  //   HEAD of either: the same headers, no body (not counted as a scrape);
  //   another method on either: 405 with Allow: GET, HEAD;
  //   any other path: 404.
  // An exception from `metrics` or `statusz` is logged and answered with 500. Every reply
  // carries Connection: close (one request per connection). UNAVAILABLE when the address
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Collectable> metrics, PageFn statusz);

  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The TCP port actually bound (the one picked when `address` asked for port 0).
  int port() const { return port_; }

 private:
  class Handlers;

  MetricsHttpServer() = default;

  // Declared before server_: civetweb's threads use the handlers until server_ is stopped.
  std::unique_ptr<Handlers> handlers_;
  std::unique_ptr<CivetServer> server_;
  int port_ = 0;
};

// Whether an Accept-Encoding header value accepts gzip: "gzip" (or "x-gzip") or "*" with a
// q-value above 0 (RFC 9110 12.5.3; a missing q-value is 1, "gzip;q=0" refuses gzip).
bool AcceptsGzip(absl::string_view accept_encoding);

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_HTTP_SERVER_H_
