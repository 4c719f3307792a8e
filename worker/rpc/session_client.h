#ifndef METATRAIN_WORKER_RPC_SESSION_CLIENT_H_
#define METATRAIN_WORKER_RPC_SESSION_CLIENT_H_

// The worker's side of WorkerService.Session (protocol: proto/metatrain/v1/worker_service.proto).
// It keeps one bidirectional stream open to the coordinator, says Hello, hands every
// JobSetup / Parameters / Assignment to the InnerLoopRunner and writes the runner's
// answers back. When the coordinator is not up yet, or goes away, it reconnects with
// exponential backoff (doubling from `initial_backoff` up to `max_backoff`, each wait
// jittered by ±25% so restarted fleets do not reconnect in lockstep), forever, until the
// coordinator sends Shutdown or Stop() is called, or the coordinator refuses the worker.
//
// Each session reads on its own thread and computes and writes on Run()'s thread, so a
// CancelAssignment reaches an assignment that waits behind the one being computed
// (worker/rpc/session_inbox.h).
//
// Thread safety: Run() is called from one thread; Stop() may be called from any thread
// (e.g. a signal-watching thread) at any time.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "worker/inner_loop_runner.h"
#include "worker/worker_metrics.h"

namespace metatrain::worker {

struct SessionOptions {
  std::string coordinator;  // host:port
  std::string name;         // Hello.name, e.g. hostname:pid
  std::string device = "cpu";
  int capacity = 1;
  int threads = 1;
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  // Prints one line per connection event to stderr.
  bool verbose = true;
  // Also one line per assignment: "assignment <id> job <job> version <v> tasks <n>
  // compute <seconds>" (bench/distributed_bench reads these).
  bool log_assignments = false;
  // Where sessions and traffic are recorded; optional, must outlive the client.
  WorkerMetrics* metrics = nullptr;
  // Transport: null means plaintext (rpc::MakeChannelCredentials builds TLS ones);
  // `tls_server_name` replaces the host as the name checked in the server's certificate.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string tls_server_name;
  // The join token sent with each Session (docs/security.md): read from `token_file` at
  // every new session, so a rotated token is picked up on reconnecting; else `token`.
  std::string token_file;
  std::string token;
};

class SessionClient {
 public:
  // `runner` must outlive the client.
  SessionClient(SessionOptions options, InnerLoopRunner* runner);

  // Serves sessions until the coordinator says Shutdown (returns OK) or Stop() is called
  // (returns CANCELLED). Never returns because the coordinator is unreachable: it waits.
  // A coordinator that refuses the Hello (another metatrain version: FAILED_PRECONDITION;
  // an unreadable device: INVALID_ARGUMENT) or the worker's credentials (UNAUTHENTICATED,
  // PERMISSION_DENIED) ends Run() with that status, since retrying cannot change the answer.
  absl::Status Run() ABSL_LOCKS_EXCLUDED(mu_);

  // Ends Run() as soon as possible: cancels the open stream (the coordinator then
  // reassigns this worker's tasks) and interrupts a backoff wait. An assignment being
  // computed finishes first.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Completed sessions (streams that got a Welcome), for tests and logs.
  int sessions() const { return sessions_.load(); }

 private:
  enum class SessionEnd { kShutdown, kLost, kRefused };
  // `refusal`: set with kRefused.
  SessionEnd RunSession(bool& welcomed, absl::Status& refusal) ABSL_LOCKS_EXCLUDED(mu_);
  // Sleeps `d` unless Stop() comes first. Returns false if stopped.
  bool WaitFor(std::chrono::milliseconds d) ABSL_LOCKS_EXCLUDED(mu_);
  void Log(const std::string& line) const;

  SessionOptions options_;
  InnerLoopRunner* runner_;
  std::shared_ptr<grpc::Channel> channel_;

  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // The open stream's context, for Stop() to cancel; null between sessions.
  grpc::ClientContext* current_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::atomic<int> sessions_{0};
  std::string last_error_;  // of the last session that ended before its Welcome; Run()'s thread
};

}  // namespace metatrain::worker

#endif  // METATRAIN_WORKER_RPC_SESSION_CLIENT_H_
