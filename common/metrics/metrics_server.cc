#include "common/metrics/metrics_server.h"

#include <exception>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/metrics/process_collector.h"
#include "prometheus/exposer.h"

namespace metatrain::metrics {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, const std::vector<std::weak_ptr<prometheus::Collectable>>& sources) {
  const size_t colon = listen.rfind(':');
  int requested_port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &requested_port) || requested_port < 0 ||
      requested_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_listen must be HOST:PORT, e.g. 0.0.0.0:9464 (got \"", listen, "\")"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->host_ = listen.substr(0, colon);
  try {
    // Two HTTP threads: Prometheus scrapes one at a time; the second answers a person's
    // curl meanwhile.
    server->exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen));
  }
  server->port_ = ports.front();
  server->process_ = std::make_shared<ProcessCollector>();
  server->exposer_->RegisterCollectable(server->process_);
  for (const auto& source : sources) server->exposer_->RegisterCollectable(source);
  return server;
}

MetricsServer::~MetricsServer() = default;

std::string MetricsServer::url() const {
  std::string host = host_;
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "localhost") {
    host = "127.0.0.1";
  }
  return absl::StrCat("http://", host, ":", port_, "/metrics");
}

}  // namespace metatrain::metrics
