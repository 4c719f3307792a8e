// metatrain-worker: computes inner loops for a metatrain coordinator.
//
//   metatrain-worker [--coordinator host:port] ([--tls_ca FILE] [--tls_cert FILE --tls_key FILE]
//                    | --insecure) [--token_file FILE] [--device cpu|cuda:N] [--threads N]
//                    [--capacity N] [--max_cached_jobs N] [--task_group_size N]
//                    [--data_dir DIR] [--name NAME]
//                    [--log_assignments] [--metrics_listen HOST:PORT]
//
// The coordinator address falls back to $METATRAIN_COORDINATOR, then 127.0.0.1:50051.
// TLS is the default (common/rpc/client_flags.h); the join token comes from --token_file
// ($METATRAIN_WORKER_TOKEN_FILE) or $METATRAIN_WORKER_TOKEN.
// Runs until the coordinator sends Shutdown or the process gets SIGINT/SIGTERM (a second
// signal exits at once). A coordinator that refuses the worker (another metatrain
// version) ends it with exit status 3.

#include <ATen/Parallel.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/cli/flags.h"
#include "common/logging/log.h"
#include "common/meta/runtime.h"
#include "common/metrics/metrics_server.h"
#include "common/process/shutdown_signals.h"
#include "common/rpc/client_flags.h"
#include "worker/inner_loop_runner.h"
#include "worker/rpc/session_client.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "the coordinator's address, host:port");
ABSL_FLAG(std::string, device, "cpu", "where inner loops run: cpu or cuda:N");
ABSL_FLAG(int, threads, 1,
          "threads computing an assignment's task groups at once (each task on one thread; "
          "the bits do not depend on it)");
ABSL_FLAG(int, capacity, 32, "tasks this worker takes at once (one batched computation)");
ABSL_FLAG(int, max_cached_jobs, 4,
          "jobs whose setup (model, dataset) stays in memory; more running jobs still work, "
          "at the cost of setting evicted jobs up again");
ABSL_FLAG(int, task_group_size, 0,
          "compute an assignment's meta-gradients this many tasks at a time (0: the model's "
          "default, 1 for the conv net and the assignment split over --threads for MLPs): "
          "peak memory follows the group, the results are the same bits");
ABSL_FLAG(std::string, data_dir, "",
          "this worker's copy of the dataset, used instead of the job's tasks.data_dir; empty: "
          "the job's");
ABSL_FLAG(std::string, data_root, "../shared/data,/usr/share/datasets",
          "comma-separated directories that the tasks.data_dir and tasks.tensor_file of a job "
          "must lie in (relative ones against the working directory); --data_dir is not "
          "confined");
ABSL_FLAG(std::string, name, "", "name shown by the coordinator; empty: hostname:pid");
ABSL_FLAG(bool, log_assignments, false, "log every assignment's compute time to stderr");
ABSL_FLAG(
    std::string, metrics_listen, "",
    "host:port for Prometheus metrics at /metrics (port 0: a free port, logged); empty: none");

namespace {

metatrain::cli::Program WorkerProgram() {
  metatrain::cli::Program program;
  program.name = "metatrain-worker";
  program.usage =
      "usage: metatrain-worker [--coordinator HOST:PORT] [--tls_ca FILE] [--tls_cert FILE "
      "--tls_key FILE]\n"
      "                        [--insecure] [--token_file FILE] [--device cpu|cuda:N] "
      "[--threads N]\n"
      "                        [--capacity N] [--max_cached_jobs N] [--task_group_size N]\n"
      "                        [--data_dir DIR] [--name NAME]\n"
      "                        [--log_assignments] [--metrics_listen HOST:PORT] [--data_root "
      "DIRS]\n"
      "Computes inner loops for a metatrain coordinator. Runs until the coordinator sends\n"
      "Shutdown or the process gets SIGINT/SIGTERM (a second signal exits at once); an\n"
      "unreachable coordinator is retried with backoff; a coordinator of another version\n"
      "refuses the worker, which then exits with status 3; so does one that refuses its\n"
      "join token or its certificate. TLS unless --insecure; docs/security.md.";
  program.flag_files = {"worker/main.cc", metatrain::rpc::kClientFlagsFile};
  program.aliases = {{"data-dir", "data_dir"}};
  program.env_defaults = {{"coordinator", "METATRAIN_COORDINATOR"}};
  for (auto& env : metatrain::rpc::ClientSecurityEnvDefaults("METATRAIN_WORKER_TOKEN_FILE")) {
    program.env_defaults.push_back(env);
  }
  return program;
}

}  // namespace

int main(int argc, char** argv) {
  using metatrain::worker::InnerLoopRunner;
  using metatrain::worker::RunnerOptions;
  using metatrain::worker::SessionClient;
  using metatrain::worker::SessionOptions;

  const metatrain::cli::Program program = WorkerProgram();
  const metatrain::cli::CommandLine command_line =
      metatrain::cli::ParseCommandLineOrExit(program, argc, argv);
  auto usage_error = [&](const std::string& message) {
    return metatrain::cli::UsageError(program, message);
  };
  if (!command_line.positional.empty()) {
    return usage_error(absl::StrCat("unexpected argument \"", command_line.positional[0], "\""));
  }
  SessionOptions session;
  RunnerOptions runner_options;
  session.coordinator = absl::GetFlag(FLAGS_coordinator);
  session.device = absl::GetFlag(FLAGS_device);
  session.threads = absl::GetFlag(FLAGS_threads);
  session.capacity = absl::GetFlag(FLAGS_capacity);
  session.name = absl::GetFlag(FLAGS_name);
  session.log_assignments = absl::GetFlag(FLAGS_log_assignments);
  runner_options.data_dir = absl::GetFlag(FLAGS_data_dir);
  runner_options.max_cached_jobs = absl::GetFlag(FLAGS_max_cached_jobs);
  runner_options.task_group_size = absl::GetFlag(FLAGS_task_group_size);
  runner_options.threads = session.threads;
  if (runner_options.task_group_size < 0) {
    return usage_error(
        absl::StrCat("--task_group_size must be >= 0 (got ", runner_options.task_group_size, ")"));
  }
  auto data_roots =
      metatrain::files::ConfinedRoots::FromList("--data_root", absl::GetFlag(FLAGS_data_root));
  if (!data_roots.ok() || !data_roots->confined()) {
    return usage_error("--data_root must name at least one directory");
  }
  runner_options.data_roots = *data_roots;
  if (session.threads <= 0) {
    return usage_error(
        absl::StrCat("--threads must be a positive integer (got \"", session.threads, "\")"));
  }
  if (session.capacity <= 0) {
    return usage_error(
        absl::StrCat("--capacity must be a positive integer (got \"", session.capacity, "\")"));
  }
  if (runner_options.max_cached_jobs <= 0) {
    return usage_error(absl::StrCat("--max_cached_jobs must be a positive integer (got \"",
                                    runner_options.max_cached_jobs, "\")"));
  }
  if (session.coordinator.empty()) return usage_error("--coordinator must not be empty");
  auto security = metatrain::rpc::ClientSecurityFromFlags("METATRAIN_WORKER_TOKEN");
  if (!security.ok()) return usage_error(std::string(security.status().message()));
  if (!security->tls.insecure) session.credentials = security->credentials;
  session.tls_server_name = security->tls.server_name;
  session.token_file = security->token_file;
  session.token = security->token;

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

  metatrain::SetLogProgram(absl::StrCat("metatrain-worker ", session.name));
  if (security->tls.insecure) {
    metatrain::LogLine(absl::StrCat("WARNING: --insecure: plaintext gRPC to ", session.coordinator,
                                    "; the join token and all traffic can be read on the way"));
  }
  metatrain::worker::WorkerMetrics metrics(session.device);
  std::unique_ptr<metatrain::metrics::MetricsServer> metrics_server;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    auto started = metatrain::metrics::MetricsServer::Start(listen, {metrics.registry()});
    if (!started.ok()) {
      if (absl::IsInvalidArgument(started.status())) {
        return usage_error(std::string(started.status().message()));
      }
      std::fprintf(stderr, "metatrain-worker: %s\n",
                   std::string(started.status().message()).c_str());
      return 1;
    }
    metrics_server = std::move(started).value();
    metatrain::LogLine(absl::StrCat("metrics on ", metrics_server->url()));
  }
  runner_options.metrics = &metrics;
  session.metrics = &metrics;

  metatrain::meta::ConfigureRuntime();
  InnerLoopRunner runner(runner_options);
  SessionClient client(session, &runner);

  std::thread signal_thread([&] {
    int sig = metatrain::WaitForShutdownSignal();
    metatrain::LogLine(absl::StrCat(sig == SIGINT ? "SIGINT" : "SIGTERM", " received, leaving"));
    client.Stop();
    sig = metatrain::WaitForShutdownSignal();
    std::_Exit(128 + sig);  // a second signal: do not wait for the current assignment
  });
  signal_thread.detach();

  metatrain::LogLine(absl::StrCat("device ", session.device, ", ", session.threads,
                                  " thread(s), capacity ", session.capacity, ", coordinator ",
                                  session.coordinator));
  absl::Status status = client.Run();
  // Stopped by a signal or told to shut down: both are a clean exit. Refused by the
  // coordinator (another version, a bad join token or certificate): retrying cannot help, so
  // say why and exit 3, which a supervisor shows as a failing worker rather than one quietly
  // retrying forever.
  int exit_code = 0;
  if (absl::IsFailedPrecondition(status) || absl::IsInvalidArgument(status) ||
      absl::IsUnauthenticated(status) || absl::IsPermissionDenied(status)) {
    metatrain::LogLine(std::string(status.message()));
    exit_code = 3;
  }
  metatrain::FlushLog();
  // Skip static destructors: the detached signal thread still references locals.
  std::_Exit(exit_code);
}
