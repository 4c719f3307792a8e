#ifndef METATRAIN_TESTS_TESTING_SCRIPTED_WORKER_H_
#define METATRAIN_TESTS_TESTING_SCRIPTED_WORKER_H_

// A worker whose every message the test writes by hand, over a real WorkerService
// Session stream: for driving the coordinator into corner cases (bad gradients, stale
// results, odd arrival orders) and observing exactly what it sends back.

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/params.h"
#include "metatrain/v1/worker_service.grpc.pb.h"

namespace metatrain::testing {

class ScriptedWorker {
 public:
  // Opens a session and waits for the Welcome. Every read is bounded by `deadline`
  // (the whole session's deadline), so a test never hangs on a silent coordinator.
  static absl::StatusOr<std::unique_ptr<ScriptedWorker>> Connect(
      const std::string& address, int capacity = 64, absl::Duration deadline = absl::Seconds(60));
  // The same with a Hello of the test's making (Connect sends name "scripted", device
  // "cpu", `capacity` and this build's version). A coordinator that refuses the Hello
  // ends the stream: its status is returned.
  static absl::StatusOr<std::unique_ptr<ScriptedWorker>> ConnectWith(
      const std::string& address, const v1::Hello& hello,
      absl::Duration deadline = absl::Seconds(60));
  // The Hello that Connect sends.
  static v1::Hello DefaultHello(int capacity = 64);
  ~ScriptedWorker();

  const std::string& worker_id() const { return worker_id_; }

  // The next message; nullopt once the stream has ended.
  std::optional<v1::CoordinatorMessage> Read();
  // Reads until an Assignment, remembering JobSetups and Parameters on the way. nullopt
  // if the stream ends (or a Shutdown arrives) first.
  std::optional<v1::Assignment> NextAssignment();

  // Parameters received so far for (job, version), decoded with `specs`.
  absl::StatusOr<meta::TensorList> ParamsOf(const std::string& job_id, int64_t version,
                                            const std::vector<meta::ParamSpec>& specs,
                                            at::ScalarType dtype) const;
  bool HasParams(const std::string& job_id, int64_t version) const;
  std::optional<v1::JobSpec> SpecOf(const std::string& job_id) const;

  bool Write(const v1::WorkerMessage& message);
  // One task's gradient (a gradient group of one), chunked by the real codec.
  bool SendGradient(int64_t assignment_id, int64_t task_index, const meta::TensorList& gradient,
                    double query_loss, double query_accuracy = -1,
                    int64_t max_chunk_bytes = 1 << 20);
  // A gradient group's sum, from `first_task`, with one query loss and accuracy per task.
  bool SendGroupGradient(int64_t assignment_id, int64_t first_task,
                         const meta::TensorList& gradient_sum,
                         const std::vector<double>& query_loss,
                         const std::vector<double>& query_accuracy,
                         int64_t max_chunk_bytes = 1 << 20);
  // The TaskGradient messages SendGroupGradient writes, for a test to send otherwise (in a
  // GradientBatch, say). Empty if the tensors cannot be encoded.
  static std::vector<v1::TaskGradient> GroupGradientMessages(
      int64_t assignment_id, int64_t first_task, const meta::TensorList& gradient_sum,
      const std::vector<double>& query_loss, const std::vector<double>& query_accuracy,
      int64_t max_chunk_bytes = 1 << 20);
  bool SendDone(int64_t assignment_id, const std::vector<v1::TaskMetrics>& metrics = {},
                const std::string& error = "");
  // Half-closes and waits for the end of the stream.
  grpc::Status Close();

 private:
  ScriptedWorker() = default;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>> stream_;
  std::string worker_id_;
  bool closed_ = false;
  std::map<std::string, v1::JobSpec> specs_;
  std::map<std::pair<std::string, int64_t>, std::vector<v1::TensorChunk>> params_;
};

}  // namespace metatrain::testing

#endif  // METATRAIN_TESTS_TESTING_SCRIPTED_WORKER_H_
