// metatrain-worker: computes inner loops for a metatrain coordinator.
//
//   metatrain-worker [--coordinator host:port] [--device cpu|cuda:N] [--threads N]
//                    [--capacity N] [--data_dir DIR] [--name NAME]
//
// The coordinator address falls back to $METATRAIN_COORDINATOR, then 127.0.0.1:50051.
// Runs until the coordinator sends Shutdown or the process gets SIGINT/SIGTERM (a second
// signal exits at once).

#include <ATen/Parallel.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/meta/runtime.h"
#include "common/process/shutdown_signals.h"
#include "worker/inner_loop_runner.h"
#include "worker/rpc/session_client.h"

namespace {

constexpr char kUsage[] =
    "usage: metatrain-worker [--coordinator host:port] [--device cpu|cuda:N] [--threads N]\n"
    "                        [--capacity N] [--data_dir DIR] [--name NAME]\n"
    "                        [--log_assignments]\n"
    "  --coordinator  coordinator address (default: $METATRAIN_COORDINATOR or 127.0.0.1:50051)\n"
    "  --device       where inner loops run (default cpu)\n"
    "  --threads      intra-op threads for LibTorch (default 1)\n"
    "  --capacity     tasks this worker takes at once (default 32)\n"
    "  --data_dir     this worker's copy of the dataset (replaces the job's tasks.data_dir)\n"
    "  --name         name shown by the coordinator (default hostname:pid)\n"
    "  --log_assignments  log every assignment's compute time to stderr\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "metatrain-worker: %s\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using metatrain::worker::InnerLoopRunner;
  using metatrain::worker::RunnerOptions;
  using metatrain::worker::SessionClient;
  using metatrain::worker::SessionOptions;

  SessionOptions session;
  RunnerOptions runner_options;
  const char* env = std::getenv("METATRAIN_COORDINATOR");
  session.coordinator = (env != nullptr && *env != '\0') ? env : "127.0.0.1:50051";
  session.capacity = 32;
  session.threads = 1;

  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (!absl::StartsWith(arg, "--")) return UsageError("unexpected argument \"" + arg + "\"");
    if (arg == "--log_assignments") {
      session.log_assignments = true;
      continue;
    }
    std::string name = arg.substr(2), value;
    const auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return UsageError("--" + name + " needs a value");
    }
    if (name == "coordinator") {
      session.coordinator = value;
    } else if (name == "device") {
      session.device = value;
    } else if (name == "data_dir" || name == "data-dir") {
      runner_options.data_dir = value;
    } else if (name == "name") {
      session.name = value;
    } else if (name == "threads" || name == "capacity") {
      int n = 0;
      if (!absl::SimpleAtoi(value, &n) || n <= 0) {
        return UsageError(
            absl::StrCat("--", name, " must be a positive integer (got \"", value, "\")"));
      }
      (name == "threads" ? session.threads : session.capacity) = n;
    } else {
      return UsageError("unknown flag --" + name);
    }
  }
  if (session.coordinator.empty()) return UsageError("--coordinator must not be empty");

  auto device = metatrain::worker::ParseDevice(session.device);
  if (!device.ok()) {
    std::fprintf(stderr, "metatrain-worker: %s\n", device.status().ToString().c_str());
    return 2;
  }
  runner_options.device = session.device;
  if (session.name.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    session.name = absl::StrCat(host, ":", getpid());
  }

  // NOTE [Signals through a pipe] in common/process/shutdown_signals.h.
  if (absl::Status installed = metatrain::InstallShutdownSignalHandlers(); !installed.ok()) {
    std::fprintf(stderr, "metatrain-worker: %s\n", installed.ToString().c_str());
    return 1;
  }

  metatrain::meta::ConfigureRuntime(session.threads);
  InnerLoopRunner runner(runner_options);
  SessionClient client(session, &runner);

  std::thread signal_thread([&] {
    int sig = metatrain::WaitForShutdownSignal();
    std::fprintf(stderr, "metatrain-worker %s: %s received, leaving\n", session.name.c_str(),
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    client.Stop();
    sig = metatrain::WaitForShutdownSignal();
    std::_Exit(128 + sig);  // a second signal: do not wait for the current assignment
  });
  signal_thread.detach();

  std::fprintf(stderr,
               "metatrain-worker %s: device %s, %d thread(s), capacity %d, coordinator %s\n",
               session.name.c_str(), session.device.c_str(), session.threads, session.capacity,
               session.coordinator.c_str());
  absl::Status status = client.Run();
  // Stopped by a signal or told to shut down: both are a clean exit.
  (void)status;
  std::fflush(stderr);
  // Skip static destructors: the detached signal thread still references locals.
  std::_Exit(0);
}
