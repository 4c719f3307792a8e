// The /metrics endpoint, scraped over real HTTP on loopback.

#include "common/metrics/metrics_server.h"

#include <ATen/ATen.h>
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace metatrain::metrics {
namespace {

using ::testing::HasSubstr;

// Sends `request` to 127.0.0.1:port; the whole response, headers included.
std::string HttpRequest(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return "";
  }
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return "";
  }
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  ::close(fd);
  return response;
}

std::string HttpGet(int port, const std::string& path) {
  return HttpRequest(port, absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"));
}

TEST(MetricsServerTest, ServesRegisteredSeriesAndProcessSeriesOnAFreePort) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("metatrain_test_events_total")
      .Help("Events of the test.")
      .Register(*registry)
      .Add({{"reason", "because"}})
      .Increment(3);
  auto server = MetricsServer::Start("127.0.0.1:0", {registry});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->url(), absl::StrCat("http://127.0.0.1:", (*server)->port(), "/metrics"));

  const std::string response = HttpGet((*server)->port(), "/metrics");
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("# TYPE metatrain_test_events_total counter"));
  EXPECT_THAT(response, HasSubstr("metatrain_test_events_total{reason=\"because\"} 3"));
  EXPECT_THAT(response, HasSubstr("# TYPE process_resident_memory_bytes gauge"));
  EXPECT_THAT(response, HasSubstr("process_cpu_seconds_total "));
  EXPECT_THAT(response, HasSubstr("process_start_time_seconds "));

  // A collectable that is gone simply stops appearing.
  registry.reset();
  EXPECT_THAT(HttpGet((*server)->port(), "/metrics"),
              ::testing::Not(HasSubstr("metatrain_test_events_total")));
}

// prometheus-cpp's own server cannot start its threads next to LibTorch (NOTE [Why not
// prometheus-cpp's Exposer]); ours must.
TEST(MetricsServerTest, ServesInAProcessThatUsesLibTorch) {
  const at::Tensor loaded = at::ones({2, 2});
  ASSERT_EQ(loaded.sum().item<float>(), 4);
  auto server = MetricsServer::Start("0.0.0.0:0", {});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(HttpGet((*server)->port(), "/metrics"), HasSubstr("process_resident_memory_bytes"));
}

TEST(MetricsServerTest, OnlyGetAndHeadOfMetricsAreServed) {
  auto server = MetricsServer::Start("localhost:0", {});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  EXPECT_THAT(HttpGet(port, "/"), HasSubstr("404 Not Found"));
  EXPECT_THAT(HttpGet(port, "/metrics?x=1"), HasSubstr("200 OK"));
  EXPECT_THAT(HttpRequest(port, "POST /metrics HTTP/1.0\r\n\r\n"),
              HasSubstr("405 Method Not Allowed"));
  const std::string head = HttpRequest(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_THAT(head, HasSubstr("200 OK"));
  EXPECT_THAT(head, ::testing::Not(HasSubstr("process_resident_memory_bytes")));
  EXPECT_THAT(HttpRequest(port, std::string(9000, 'x')), HasSubstr("431"));
}

TEST(MetricsServerTest, MalformedAddressIsInvalidArgumentNamingTheFlag) {
  for (const char* bad : {"9464", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", ":-1"}) {
    auto server = MetricsServer::Start(bad, {});
    ASSERT_FALSE(server.ok()) << bad;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(server.status().message()), HasSubstr("--metrics_listen")) << bad;
  }
}

TEST(MetricsServerTest, PortInUseIsUnavailable) {
  auto first = MetricsServer::Start("127.0.0.1:0", {});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = MetricsServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()), {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace metatrain::metrics
