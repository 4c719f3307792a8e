#ifndef METATRAIN_TESTS_TESTING_COORDINATOR_HARNESS_H_
#define METATRAIN_TESTS_TESTING_COORDINATOR_HARNESS_H_

// A real coordinator and its gRPC server on 127.0.0.1 with a free port, plus a JobService
// client, for tests. Also small JobService helpers with deadlines.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/coordinator.h"
#include "coordinator/rpc/server.h"
#include "metatrain/v1/job_service.grpc.pb.h"

namespace metatrain::testing {

class CoordinatorHarness {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorHarness>> Start(
      coordinator::CoordinatorOptions options);
  ~CoordinatorHarness();

  // "127.0.0.1:<port>".
  const std::string& address() const { return address_; }
  coordinator::Coordinator& coordinator() { return *coordinator_; }
  v1::JobService::Stub& jobs() { return *stub_; }
  // Stops the server (jobs stay resumable) and the coordinator.
  void Shutdown();

  // JobService calls with a 60 s deadline.
  absl::StatusOr<std::string> Submit(const v1::JobSpec& spec);
  absl::StatusOr<v1::JobStatus> Get(const std::string& job_id);
  absl::StatusOr<v1::JobStatus> Cancel(const std::string& job_id);
  // Watches until the stream ends; returns every event received.
  absl::StatusOr<std::vector<v1::JobEvent>> WatchToEnd(
      const std::string& job_id, absl::Duration deadline = absl::Seconds(120));
  // Watches until an event satisfies `until` (true) or the stream ends (false).
  absl::StatusOr<bool> WatchUntil(const std::string& job_id,
                                  const std::function<bool(const v1::JobEvent&)>& until,
                                  absl::Duration deadline = absl::Seconds(120));
  // The whole checkpoint, reassembled from its chunks (checks offsets and totals).
  absl::StatusOr<std::string> Fetch(const std::string& job_id, const std::string& which);

 private:
  CoordinatorHarness() = default;
  std::unique_ptr<coordinator::Coordinator> coordinator_;
  std::unique_ptr<coordinator::CoordinatorServer> server_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

}  // namespace metatrain::testing

#endif  // METATRAIN_TESTS_TESTING_COORDINATOR_HARNESS_H_
