#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstring>
#include <string>

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

// One HTTP/1.0 GET to 127.0.0.1:port with a 10 s socket timeout.
Response Get(int port, const std::string& path, const std::string& extra_headers = "") {
  Response r;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return r;
  const timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string raw;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\n", extra_headers, "\r\n");
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
  static MetricsHttpServer* http_;
};

std::shared_ptr<prometheus::Registry>* MetricsHttpServerTest::registry_ = nullptr;
std::atomic<int> MetricsHttpServerTest::pages_{0};
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

TEST_F(MetricsHttpServerTest, TakenPortIsUnavailable) {
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second = MetricsHttpServer::Start(
      absl::StrCat("127.0.0.1:", http_->port()), *registry_, [] { return std::string(); });
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace kvtier::server
