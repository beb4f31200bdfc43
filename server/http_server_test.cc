#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvtier::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct Response {
  std::string status_line;
  std::string headers;  // lower-cased
  std::string body;
};

// A TCP socket connected to 127.0.0.1:port with a 10 s receive timeout, or -1.
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One HTTP/1.1 request (`method` `path`) to 127.0.0.1:port, read until the server closes.
Response Request(int port, const std::string& method, const std::string& path,
                 const std::string& extra_headers = "") {
  Response r;
  const int fd = Connect(port);
  if (fd < 0) return r;
  std::string raw;
  {
    const std::string request =
        absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n", extra_headers, "\r\n");
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buf[8192];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) raw.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return r;
  r.status_line = raw.substr(0, raw.find("\r\n"));
  r.headers = raw.substr(0, end);
  for (char& c : r.headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  r.body = raw.substr(end + 4);
  return r;
}

Response Get(int port, const std::string& path, const std::string& extra_headers = "") {
  return Request(port, "GET", path, extra_headers);
}

std::string Gunzip(const std::string& in) {
  z_stream z;
  std::memset(&z, 0, sizeof(z));
  if (inflateInit2(&z, 15 + 16) != Z_OK) return "";
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[8192];
  int result;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    result = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
  } while (result == Z_OK);
  inflateEnd(&z);
  return result == Z_STREAM_END ? out : "";
}

// The value of the unlabelled sample `name` in Prometheus text, or -1.
double Sample(const std::string& text, const std::string& name) {
  const std::string key = absl::StrCat("\n", name, " ");
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + key.size()));
}

// One server for the suite: stopping civetweb takes about 2 s.
class MetricsHttpServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    registry_ = new std::shared_ptr<prometheus::Registry>(std::make_shared<prometheus::Registry>());
    prometheus::BuildCounter()
        .Name("kvtier_test_things_total")
        .Help("Things")
        .Register(**registry_)
        .Add({})
        .Increment(7);
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
        MetricsHttpServer::Start("127.0.0.1:0", *registry_, [] {
          ++pages_;
          if (throw_) throw std::runtime_error("page failed");
          return std::string("<!DOCTYPE html><p>status</p>");
        });
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = http->release();
  }
  static void TearDownTestSuite() {
    delete http_;
    http_ = nullptr;
    delete registry_;
    registry_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(http_, nullptr); }

  static std::shared_ptr<prometheus::Registry>* registry_;
  static std::atomic<int> pages_;
  static std::atomic<bool> throw_;  // the page callback throws while set
  static MetricsHttpServer* http_;
};

std::shared_ptr<prometheus::Registry>* MetricsHttpServerTest::registry_ = nullptr;
std::atomic<int> MetricsHttpServerTest::pages_{0};
std::atomic<bool> MetricsHttpServerTest::throw_{false};
MetricsHttpServer* MetricsHttpServerTest::http_ = nullptr;

TEST_F(MetricsHttpServerTest, ServesMetricsAsPrometheusText) {
  ASSERT_GT(http_->port(), 0);
  const Response r = Get(http_->port(), "/metrics");
  EXPECT_THAT(r.status_line, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(r.headers, HasSubstr("content-type: text/plain; version=0.0.4; charset=utf-8"));
  EXPECT_THAT(r.headers, Not(HasSubstr("content-encoding")));
  EXPECT_THAT(r.body, HasSubstr("# TYPE kvtier_test_things_total counter\n"));
  EXPECT_THAT(r.body, HasSubstr("\nkvtier_test_things_total 7\n"));
  // The Exposer's scrape counters stay, counting the scrapes before this one.
  const double scrapes = Sample(r.body, "exposer_scrapes_total");
  const double bytes = Sample(r.body, "exposer_transferred_bytes_total");
  ASSERT_GE(scrapes, 0);
  ASSERT_GE(bytes, 0);
  const Response again = Get(http_->port(), "/metrics");
  EXPECT_EQ(Sample(again.body, "exposer_scrapes_total"), scrapes + 1);
  EXPECT_EQ(Sample(again.body, "exposer_transferred_bytes_total"),
            bytes + static_cast<double>(r.body.size()));
}

TEST_F(MetricsHttpServerTest, CompressesMetricsWhenAccepted) {
  const Response r = Get(http_->port(), "/metrics", "Accept-Encoding: gzip, deflate\r\n");
  EXPECT_THAT(r.status_line, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(r.headers, HasSubstr("content-encoding: gzip"));
  EXPECT_THAT(Gunzip(r.body), HasSubstr("\nkvtier_test_things_total 7\n"));
}

TEST_F(MetricsHttpServerTest, ServesTheStatusPage) {
  const int pages = pages_.load();
  const Response r = Get(http_->port(), "/statusz");
  EXPECT_THAT(r.status_line, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(r.headers, HasSubstr("content-type: text/html; charset=utf-8"));
  EXPECT_EQ(r.body, "<!DOCTYPE html><p>status</p>");
  EXPECT_EQ(pages_.load(), pages + 1);
}

TEST_F(MetricsHttpServerTest, UnknownPathsAreNotFound) {
  const int pages = pages_.load();
  for (const char* path : {"/", "/nope", "/metrics/x", "/statusz/x", "/metricsx", "/favicon.ico"}) {
    const Response r = Get(http_->port(), path);
    EXPECT_THAT(r.status_line, StartsWith("HTTP/1.1 404")) << path;
  }
  EXPECT_EQ(pages_.load(), pages);
}

TEST_F(MetricsHttpServerTest, RepliesSayConnectionClose) {
  for (const char* path : {"/metrics", "/statusz", "/nope"}) {
    const Response r = Get(http_->port(), path);
    EXPECT_THAT(r.headers, HasSubstr("\r\nconnection: close")) << path;
  }
}

TEST_F(MetricsHttpServerTest, GzipFollowsQValues) {
  struct Case {
    const char* accept;
    bool gzip;
  };
  for (const Case& c : {Case{"gzip;q=0", false}, Case{"gzip; q=0.000, identity", false},
                        Case{"identity", false}, Case{"deflate, br", false}, Case{"*;q=0", false},
                        Case{"*, gzip;q=0", false}, Case{"gzip;q=0.5", true}, Case{"GZIP", true},
                        Case{"*", true}, Case{"br;q=1.0, gzip;q=0.8, *;q=0.1", true}}) {
    const Response r =
        Get(http_->port(), "/metrics", absl::StrCat("Accept-Encoding: ", c.accept, "\r\n"));
    EXPECT_THAT(r.status_line, StartsWith("HTTP/1.1 200")) << c.accept;
    EXPECT_THAT(r.headers, HasSubstr("\r\nvary: accept-encoding")) << c.accept;
    if (c.gzip) {
      EXPECT_THAT(r.headers, HasSubstr("content-encoding: gzip")) << c.accept;
      EXPECT_THAT(Gunzip(r.body), HasSubstr("\nkvtier_test_things_total 7\n")) << c.accept;
    } else {
      EXPECT_THAT(r.headers, Not(HasSubstr("content-encoding"))) << c.accept;
      EXPECT_THAT(r.body, HasSubstr("\nkvtier_test_things_total 7\n")) << c.accept;
    }
  }
  EXPECT_THAT(Get(http_->port(), "/metrics").headers, HasSubstr("\r\nvary: accept-encoding"));
}

TEST(AcceptsGzip, ParsesItemsAndQValues) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("x-gzip"));
  EXPECT_TRUE(AcceptsGzip(" deflate , gzip ;Q=0.001"));
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0.0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=oops"));
  EXPECT_FALSE(AcceptsGzip("gzipx"));
  EXPECT_FALSE(AcceptsGzip("*;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0, *"));  // gzip named and refused: * does not cover it
  EXPECT_TRUE(AcceptsGzip("identity;q=0, *"));
}

TEST_F(MetricsHttpServerTest, HeadGetsTheHeadersWithoutABody) {
  const Response get = Get(http_->port(), "/metrics");
  ASSERT_THAT(get.status_line, StartsWith("HTTP/1.1 200"));
  const double scrapes = Sample(get.body, "exposer_scrapes_total");
  const Response head = Request(http_->port(), "HEAD", "/metrics");
  EXPECT_THAT(head.status_line, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(head.headers, HasSubstr("content-type: text/plain; version=0.0.4; charset=utf-8"));
  EXPECT_THAT(head.headers, HasSubstr("content-length: "));
  EXPECT_EQ(head.body, "");
  // HEAD is not a scrape.
  EXPECT_EQ(Sample(Get(http_->port(), "/metrics").body, "exposer_scrapes_total"), scrapes + 1);

  const Response page = Request(http_->port(), "HEAD", "/statusz");
  EXPECT_THAT(page.status_line, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(page.headers, HasSubstr("content-type: text/html; charset=utf-8"));
  EXPECT_THAT(page.headers, HasSubstr("content-length: 28"));
  EXPECT_EQ(page.body, "");

  const Response missing = Request(http_->port(), "HEAD", "/nope");
  EXPECT_THAT(missing.status_line, StartsWith("HTTP/1.1 404"));
  EXPECT_EQ(missing.body, "");
}

TEST_F(MetricsHttpServerTest, OtherMethodsAreNotAllowed) {
  const int pages = pages_.load();
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"}) {
    for (const char* path : {"/metrics", "/statusz"}) {
      const Response r = Request(http_->port(), method, path, "Content-Length: 0\r\n");
      EXPECT_THAT(r.status_line, StartsWith("HTTP/1.1 405")) << method << " " << path;
      EXPECT_THAT(r.headers, HasSubstr("\r\nallow: get, head")) << method << " " << path;
    }
  }
  EXPECT_EQ(pages_.load(), pages);
}

TEST_F(MetricsHttpServerTest, AnExceptionFromThePageIsA500) {
  throw_ = true;
  const Response r = Get(http_->port(), "/statusz");
  throw_ = false;
  EXPECT_THAT(r.status_line, StartsWith("HTTP/1.1 500"));
  EXPECT_THAT(r.body, HasSubstr("500 internal error"));
  // The server is still up.
  EXPECT_THAT(Get(http_->port(), "/statusz").status_line, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(Get(http_->port(), "/metrics").status_line, StartsWith("HTTP/1.1 200"));
}

TEST_F(MetricsHttpServerTest, IdleConnectionsDoNotStallAScrape) {
  // Connections that never send a request each hold a worker until the request timeout.
  std::vector<int> idle;
  for (int i = 0; i < 8; ++i) {
    const int fd = Connect(http_->port());
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  const auto start = std::chrono::steady_clock::now();
  const Response r = Get(http_->port(), "/metrics");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (int fd : idle) close(fd);
  EXPECT_THAT(r.status_line, StartsWith("HTTP/1.1 200"));
  EXPECT_LT(seconds, 5.0) << "a scrape behind 8 idle connections took " << seconds << " s";
}

TEST_F(MetricsHttpServerTest, TakenPortIsUnavailable) {
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second = MetricsHttpServer::Start(
      absl::StrCat("127.0.0.1:", http_->port()), *registry_, [] { return std::string(); });
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace kvtier::server
