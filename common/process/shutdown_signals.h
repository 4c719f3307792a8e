#ifndef METATRAIN_COMMON_PROCESS_SHUTDOWN_SIGNALS_H_
#define METATRAIN_COMMON_PROCESS_SHUTDOWN_SIGNALS_H_

// SIGINT/SIGTERM handling for the long-running binaries.
//
// NOTE [Signals through a pipe]: masking the signals and sigwait-ing in one thread does
// not work here: LibTorch, OpenBLAS and gRPC may start threads before main, those threads
// keep the signals unblocked, and the kernel may deliver SIGTERM to one of them, whose
// default action kills the process. Instead a handler (installed for the whole process)
// writes the signal number into a pipe, which is async-signal-safe, and an ordinary thread
// reads it.

#include "absl/status/status.h"

namespace metatrain {

// Installs the handlers. Call once, early in main. INTERNAL if the pipe cannot be made.
absl::Status InstallShutdownSignalHandlers();

// Blocks until SIGINT or SIGTERM arrives (or one arrived since installation) and returns
// its number. Each call consumes one signal, so a second call waits for a second signal.
int WaitForShutdownSignal();

}  // namespace metatrain

#endif  // METATRAIN_COMMON_PROCESS_SHUTDOWN_SIGNALS_H_
