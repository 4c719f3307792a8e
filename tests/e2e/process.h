#ifndef METATRAIN_TESTS_E2E_PROCESS_H_
#define METATRAIN_TESTS_E2E_PROCESS_H_

// Real child processes for end-to-end tests: the built metatrain binaries, started with
// posix_spawn, found through METATRAIN_BINARY_DIR (or the build directory compiled in).
// A ChildProcess is killed (SIGKILL to its process group) and reaped when destroyed, so a
// failing test leaves nothing behind.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace metatrain::e2e {

// <binary dir>/<relative>, e.g. BinaryPath("worker/metatrain-worker").
std::string BinaryPath(const std::string& relative);

// A fresh empty directory under TMPDIR.
std::string MakeTempDir(const std::string& prefix);

class ChildProcess {
 public:
  // Starts argv[0] with argv; stdout and stderr are appended to `log_path`, except when
  // `stdout_pipe` is set: then stdout is a pipe that ReadLine reads.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                             const std::string& log_path,
                                                             bool stdout_pipe = false);
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // Reads one line of the child's stdout (pipe mode), waiting at most `timeout`.
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  void Signal(int sig);
  // Waits for the exit; returns the exit code (128 + signal when killed by one).
  // DEADLINE_EXCEEDED if it is still running after `timeout`.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool running();

 private:
  ChildProcess() = default;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string buffer_;
  bool reaped_ = false;
  int exit_code_ = -1;
};

// A metatrain-coordinator on 127.0.0.1 with a free port.
struct Coordinator {
  std::unique_ptr<ChildProcess> process;
  std::string address;  // 127.0.0.1:PORT
};
// `listen` "127.0.0.1:0" picks a free port. Plaintext (--insecure is added) unless
// `extra_flags` choose the transport themselves (--tls_... or --insecure); StartWorker
// likewise. Tests of the security flags pass them (tests/e2e/security_test.cc).
absl::StatusOr<Coordinator> StartCoordinator(const std::string& dir,
                                             const std::vector<std::string>& extra_flags = {},
                                             const std::string& listen = "127.0.0.1:0");

// A loopback port nobody listens on now (bound to port 0, noted, closed).
int UnusedPort();
// `prefix` (an absolute path first, e.g. /usr/sbin/ip netns exec NS) runs the worker
// through another program that execs it, so the worker keeps the child's pid.
absl::StatusOr<std::unique_ptr<ChildProcess>> StartWorker(
    const std::string& address, const std::string& log_path,
    const std::vector<std::string>& extra_flags = {}, const std::vector<std::string>& prefix = {});

// Waits until a worker's log (its stderr) says it is connected: "connected to ... as
// worker ...". DEADLINE_EXCEEDED after `timeout`.
absl::Status WaitForWorkerConnected(const std::string& log_path, absl::Duration timeout);

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};
// Runs a command to completion (at most `timeout`), capturing stdout and stderr.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout);

}  // namespace metatrain::e2e

#endif  // METATRAIN_TESTS_E2E_PROCESS_H_
