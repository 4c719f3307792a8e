#ifndef METATRAIN_TESTS_TESTING_LIBRARY_WORKER_H_
#define METATRAIN_TESTS_TESTING_LIBRARY_WORKER_H_

// The real worker (worker/: SessionClient over an InnerLoopRunner, what metatrain-worker
// runs) in a thread of the test process, connected over real gRPC. Unlike InProcessWorker,
// which keeps every job forever, it has the real worker's bounded job cache and its
// reconnection and refusal behaviour.

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/inner_loop_runner.h"
#include "worker/rpc/session_client.h"

namespace metatrain::testing {

class LibraryWorker {
 public:
  // Starts SessionClient::Run() in a thread; `session.coordinator` is the address.
  LibraryWorker(worker::SessionOptions session, worker::RunnerOptions runner);
  // Stop().
  ~LibraryWorker();

  // Stops the client (an assignment being computed finishes first) and joins the thread.
  void Stop();
  // Waits (up to `timeout`) for Run() to return by itself, e.g. after a refusal; its status,
  // or DEADLINE_EXCEEDED if it is still running.
  absl::Status WaitForExit(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  int sessions() const { return client_->sessions(); }

 private:
  std::unique_ptr<worker::InnerLoopRunner> runner_;
  std::unique_ptr<worker::SessionClient> client_;
  absl::Mutex mu_;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace metatrain::testing

#endif  // METATRAIN_TESTS_TESTING_LIBRARY_WORKER_H_
