#ifndef METATRAIN_COMMON_METRICS_METRICS_SERVER_H_
#define METATRAIN_COMMON_METRICS_METRICS_SERVER_H_

// The /metrics endpoint of a metatrain program (--metrics_listen HOST:PORT), in the
// Prometheus text format. It serves the collectables it is given, plus the process_*
// series (process_collector.h). prometheus-cpp's Exposer runs its own HTTP threads, so a
// scrape never touches the gRPC threads.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

namespace prometheus {
class Exposer;
}

namespace metatrain::metrics {

class MetricsServer {
 public:
  // Listens on `listen` ("HOST:PORT"; port 0 picks a free one). INVALID_ARGUMENT for a
  // malformed address, UNAVAILABLE when the port cannot be bound. The collectables are
  // held weakly: one that is destroyed simply stops appearing.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen,
      const std::vector<std::weak_ptr<prometheus::Collectable>>& sources);
  ~MetricsServer();

  int port() const { return port_; }
  // http://HOST:PORT/metrics, with 0.0.0.0 and [::] shown as 127.0.0.1.
  std::string url() const;

 private:
  MetricsServer() = default;

  std::string host_;
  int port_ = 0;
  std::shared_ptr<prometheus::Collectable> process_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace metatrain::metrics

#endif  // METATRAIN_COMMON_METRICS_METRICS_SERVER_H_
