#ifndef METATRAIN_TESTS_TESTING_IN_PROCESS_WORKER_H_
#define METATRAIN_TESTS_TESTING_IN_PROCESS_WORKER_H_

// A real worker in a thread of the test process: speaks the Session protocol over a real
// gRPC stream and computes with the meta-learning core (MakeJobContext, the learner's
// ComputeMetaGradients / Evaluate), one assignment at a time. A stand-in until the
// worker library (worker/) is merged; the protocol side is the same.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/meta/trainer.h"
#include "metatrain/v1/worker_service.grpc.pb.h"

namespace metatrain::testing {

class InProcessWorker {
 public:
  // Connects to `address` and serves assignments until Stop(), a Shutdown message or the
  // end of the stream. `capacity`: tasks per assignment it announces.
  InProcessWorker(const std::string& address, int capacity = 1000, std::string name = "in-process");
  // Stop().
  ~InProcessWorker();

  // Cancels the session (the coordinator sees the worker leave) and joins the thread.
  void Stop();

  // How the session ended (OK while running).
  absl::Status status() const ABSL_LOCKS_EXCLUDED(mu_);
  bool got_shutdown() const { return got_shutdown_; }
  int64_t assignments_done() const { return assignments_done_; }

 private:
  struct Job {
    std::unique_ptr<meta::JobContext> context;
    std::map<int64_t, std::vector<v1::TensorChunk>> chunks;  // by version
    std::map<int64_t, meta::TensorList> params;              // complete versions
    std::vector<int64_t> received;                           // their arrival order
  };

  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Serve(const v1::CoordinatorMessage& message);
  absl::Status Compute(const v1::Assignment& assignment);

  const std::string name_;
  grpc::ClientContext context_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>> stream_;
  std::map<std::string, Job> jobs_;  // worker thread only
  std::atomic<bool> got_shutdown_{false};
  std::atomic<int64_t> assignments_done_{0};
  mutable absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace metatrain::testing

#endif  // METATRAIN_TESTS_TESTING_IN_PROCESS_WORKER_H_
