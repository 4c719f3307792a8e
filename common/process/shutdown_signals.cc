#include "common/process/shutdown_signals.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace metatrain {
namespace {

int signal_pipe[2] = {-1, -1};

void WriteSignal(int sig) {
  const int saved_errno = errno;
  const char byte = static_cast<char>(sig);
  ssize_t ignored = write(signal_pipe[1], &byte, 1);
  (void)ignored;
  errno = saved_errno;
}

}  // namespace

absl::Status InstallShutdownSignalHandlers() {
  if (signal_pipe[0] >= 0) return absl::OkStatus();
  if (pipe(signal_pipe) != 0) {
    return absl::InternalError(std::string("pipe for signals: ") + std::strerror(errno));
  }
  struct sigaction action = {};
  action.sa_handler = WriteSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  return absl::OkStatus();
}

int WaitForShutdownSignal() {
  char sig = 0;
  while (read(signal_pipe[0], &sig, 1) != 1) {
  }
  return sig;
}

}  // namespace metatrain
