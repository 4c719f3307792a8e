#ifndef METATRAIN_COMMON_METRICS_METRICS_SERVER_H_
#define METATRAIN_COMMON_METRICS_METRICS_SERVER_H_

// The /metrics endpoint of a metatrain program (--metrics_listen HOST:PORT): the
// collectables it is given, plus the process_* series (process_collector.h), in the
// Prometheus text format (prometheus-cpp's serializer).
//
// NOTE [Why not prometheus-cpp's Exposer]. prometheus-cpp's pull module serves through
// civetweb, which Debian 12 builds with 100 KiB thread stacks; in a process that loads
// LibTorch, whose libraries need more static thread-local storage than that, every
// pthread_create of civetweb fails (EINVAL) and the Exposer cannot start. The transport is
// therefore ours: one thread that accepts a connection at a time and answers one GET per
// connection, which is all a scraper needs. It has its own thread, so a scrape never
// touches the gRPC threads, and bounds on what it reads and how long it waits.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

namespace metatrain::metrics {

class MetricsServer {
 public:
  // Listens on `listen` ("HOST:PORT"; port 0 picks a free one). INVALID_ARGUMENT for a
  // malformed address, UNAVAILABLE when the address cannot be bound. The collectables are
  // held weakly: one that is destroyed simply stops appearing.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, std::vector<std::weak_ptr<prometheus::Collectable>> sources);
  // Stops serving and joins the thread.
  ~MetricsServer();

  int port() const { return port_; }
  // http://HOST:PORT/metrics, with 0.0.0.0 and [::] shown as 127.0.0.1.
  std::string url() const;

  // The body a scrape gets now.
  std::string Render() const;

 private:
  MetricsServer() = default;
  void Serve();
  void Answer(int connection) const;

  std::string host_;
  int port_ = 0;
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};  // a byte here ends Serve()
  std::vector<std::weak_ptr<prometheus::Collectable>> sources_;
  std::shared_ptr<prometheus::Collectable> process_;
  std::thread thread_;
};

}  // namespace metatrain::metrics

#endif  // METATRAIN_COMMON_METRICS_METRICS_SERVER_H_
