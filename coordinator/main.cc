// metatrain-coordinator: serves the job API and the worker sessions on one port.
//
//   metatrain-coordinator [--listen HOST:PORT] [--checkpoint_dir DIR] [--max_running_jobs N]
//                         [--threads N] [--[no]resume] [--assignment_timeout_s S]
//                         [--metrics_listen HOST:PORT] [--metrics_retention 10m]
//                         [--data_root DIRS] [--weights_root DIRS] [--max_task_memory_mb N] ...

#include <ATen/Parallel.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cli/flags.h"
#include "common/logging/log.h"
#include "common/metrics/metrics_server.h"
#include "common/process/shutdown_signals.h"
#include "coordinator/coordinator.h"
#include "coordinator/rpc/server.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051",
          "host:port to serve on; port 0 picks a free port (printed on stdout)");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "where jobs keep best.pt, final.pt and resume.pt (<dir>/<job_id>/); empty: memory only");
ABSL_FLAG(int, max_running_jobs, 1, "jobs trained at the same time over the worker pool");
ABSL_FLAG(int, threads, 0, "max gRPC polling threads for the job API (0: gRPC's default)");
ABSL_FLAG(bool, resume, true, "on start, resume unfinished jobs found in --checkpoint_dir");
ABSL_FLAG(int, assignment_timeout_s, 600,
          "seconds a worker may take for one assignment before its tasks go elsewhere");
ABSL_FLAG(
    std::string, metrics_listen, "",
    "host:port for Prometheus metrics at /metrics (port 0: a free port, logged); empty: none");
ABSL_FLAG(int, worker_liveness_s, 20,
          "seconds of silence (unanswered keepalive pings) after which a worker counts as lost "
          "and its tasks go to others");
ABSL_FLAG(int, watch_max_events, 256,
          "events a watcher may have waiting (STEP events coalesce) before its watch is ended "
          "with RESOURCE_EXHAUSTED");
ABSL_FLAG(int, memory_checkpoint_jobs, 8,
          "without --checkpoint_dir: finished jobs whose best/final checkpoints stay in memory");
ABSL_FLAG(absl::Duration, metrics_retention, absl::Minutes(10),
          "how long a finished job's and a departed worker's metric series are kept, e.g. 10m");

// docs/security.md, "File paths" and "Limits".
ABSL_FLAG(std::string, data_root, "../shared/data,/usr/share/datasets",
          "comma-separated directories that a job's tasks.data_dir and tasks.tensor_file must "
          "lie in (relative ones against the working directory; so are the paths of a spec); "
          "anything else is refused as not found");
ABSL_FLAG(std::string, weights_root, ".",
          "comma-separated directories that a job's initial_weights must lie in");
ABSL_FLAG(int64_t, max_task_memory_mb, 2048,
          "refuse a job whose estimated memory for one task is over this (RESOURCE_EXHAUSTED)");
ABSL_FLAG(int64_t, max_meta_batch_memory_mb, 16384,
          "refuse a job whose estimated memory for one meta-batch at once is over this");
ABSL_FLAG(int64_t, max_meta_batch_size, 10000, "largest meta_batch_size a job may ask for");
ABSL_FLAG(int64_t, max_checkpoint_mb, 1024,
          "largest checkpoint (initial_weights, resume.pt) the coordinator reads");
ABSL_FLAG(int64_t, max_tensor_file_mb, 4096, "largest tasks.tensor_file the coordinator reads");
ABSL_FLAG(int64_t, max_checkpoint_download_mb, 1024,
          "largest checkpoint FetchCheckpoint serves (RESOURCE_EXHAUSTED above)");
ABSL_FLAG(int, max_message_mb, 16, "largest gRPC message the server accepts");
ABSL_FLAG(int, max_concurrent_streams, 100,
          "gRPC streams (calls) one client connection may have open at once");

namespace {

metatrain::cli::Program CoordinatorProgram() {
  metatrain::cli::Program program;
  program.name = "metatrain-coordinator";
  program.usage =
      "usage: metatrain-coordinator [--listen HOST:PORT] [--checkpoint_dir DIR] [flags]\n"
      "Queues meta-training jobs, hands their tasks to workers, aggregates, validates and\n"
      "checkpoints; serves the job API and the worker sessions on one port, and prints\n"
      "\"listening on HOST:PORT\" on stdout once it accepts connections.";
  program.flag_files = {"coordinator/main.cc"};
  program.epilogue =
      "SIGINT or SIGTERM stops it within seconds: it reports NOT_SERVING, each running job\n"
      "stops at its last finished step and, with --checkpoint_dir, resumes from there when\n"
      "the coordinator is started again; workers stay and reconnect to it.";
  return program;
}

}  // namespace

int main(int argc, char** argv) {
  const metatrain::cli::Program program = CoordinatorProgram();
  const metatrain::cli::CommandLine command_line =
      metatrain::cli::ParseCommandLineOrExit(program, argc, argv);
  if (!command_line.positional.empty()) {
    return metatrain::cli::UsageError(
        program, absl::StrCat("unexpected argument \"", command_line.positional[0], "\""));
  }
  at::set_num_threads(1);
  metatrain::SetLogProgram(program.name);

  // NOTE [Signals through a pipe] in common/process/shutdown_signals.h.
  if (absl::Status installed = metatrain::InstallShutdownSignalHandlers(); !installed.ok()) {
    std::fprintf(stderr, "metatrain-coordinator: %s\n", installed.ToString().c_str());
    return 1;
  }

  metatrain::coordinator::CoordinatorOptions options;
  options.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  options.max_running_jobs = absl::GetFlag(FLAGS_max_running_jobs);
  options.resume = absl::GetFlag(FLAGS_resume);
  options.assignment_timeout = absl::Seconds(absl::GetFlag(FLAGS_assignment_timeout_s));
  options.metrics_retention = absl::GetFlag(FLAGS_metrics_retention);
  options.watch_max_events = absl::GetFlag(FLAGS_watch_max_events);
  options.memory_checkpoint_jobs = absl::GetFlag(FLAGS_memory_checkpoint_jobs);
  if (options.watch_max_events < 1) {
    return metatrain::cli::UsageError(program, absl::StrCat("--watch_max_events must be >= 1 (got ",
                                                            options.watch_max_events, ")"));
  }
  if (options.memory_checkpoint_jobs < 0) {
    return metatrain::cli::UsageError(program,
                                      absl::StrCat("--memory_checkpoint_jobs must be >= 0 (got ",
                                                   options.memory_checkpoint_jobs, ")"));
  }
  if (absl::GetFlag(FLAGS_worker_liveness_s) < 1) {
    return metatrain::cli::UsageError(program,
                                      absl::StrCat("--worker_liveness_s must be >= 1 (got ",
                                                   absl::GetFlag(FLAGS_worker_liveness_s), ")"));
  }
  if (options.metrics_retention < absl::ZeroDuration()) {
    return metatrain::cli::UsageError(program, "--metrics_retention must not be negative");
  }
  if (options.max_running_jobs < 1) {
    return metatrain::cli::UsageError(program, absl::StrCat("--max_running_jobs must be >= 1 (got ",
                                                            options.max_running_jobs, ")"));
  }
  auto data_roots =
      metatrain::files::ConfinedRoots::FromList("--data_root", absl::GetFlag(FLAGS_data_root));
  auto weights_roots = metatrain::files::ConfinedRoots::FromList("--weights_root",
                                                                 absl::GetFlag(FLAGS_weights_root));
  if (!data_roots.ok() || !data_roots->confined()) {
    return metatrain::cli::UsageError(program, "--data_root must name at least one directory");
  }
  if (!weights_roots.ok() || !weights_roots->confined()) {
    return metatrain::cli::UsageError(program, "--weights_root must name at least one directory");
  }
  options.data_roots = *data_roots;
  options.weights_roots = *weights_roots;
  struct SizeFlag {
    const char* name;
    int64_t value;
    int64_t* mb;     // where the value goes, in MiB
    int64_t* bytes;  // or in bytes
  };
  const SizeFlag sizes[] = {
      {"--max_task_memory_mb", absl::GetFlag(FLAGS_max_task_memory_mb),
       &options.job_limits.max_task_memory_mb, nullptr},
      {"--max_meta_batch_memory_mb", absl::GetFlag(FLAGS_max_meta_batch_memory_mb),
       &options.job_limits.max_meta_batch_memory_mb, nullptr},
      {"--max_meta_batch_size", absl::GetFlag(FLAGS_max_meta_batch_size),
       &options.job_limits.max_meta_batch_size, nullptr},
      {"--max_checkpoint_mb", absl::GetFlag(FLAGS_max_checkpoint_mb), nullptr,
       &options.file_limits.checkpoint.max_file_bytes},
      {"--max_tensor_file_mb", absl::GetFlag(FLAGS_max_tensor_file_mb), nullptr,
       &options.file_limits.tensor_file.max_file_bytes},
      {"--max_checkpoint_download_mb", absl::GetFlag(FLAGS_max_checkpoint_download_mb), nullptr,
       &options.max_checkpoint_download_bytes},
  };
  for (const SizeFlag& flag : sizes) {
    // Up to 2^40 MiB, so that the byte counts cannot overflow.
    if (flag.value < 1 || flag.value > (int64_t{1} << 40)) {
      return metatrain::cli::UsageError(
          program, absl::StrCat(flag.name, " must be in [1, 2^40] (got ", flag.value, ")"));
    }
    if (flag.mb != nullptr) *flag.mb = flag.value;
    if (flag.bytes != nullptr) *flag.bytes = flag.value << 20;
  }
  const int message_mb = absl::GetFlag(FLAGS_max_message_mb);
  if (message_mb < 1 || message_mb > 2047) {
    return metatrain::cli::UsageError(
        program, absl::StrCat("--max_message_mb must be in [1, 2047] (got ", message_mb, ")"));
  }
  options.max_receive_message_bytes = message_mb << 20;
  options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  if (options.max_concurrent_streams < 1) {
    return metatrain::cli::UsageError(program,
                                      absl::StrCat("--max_concurrent_streams must be >= 1 (got ",
                                                   options.max_concurrent_streams, ")"));
  }
  metatrain::coordinator::Coordinator coordinator(options);
  std::unique_ptr<metatrain::metrics::MetricsServer> metrics;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    auto started =
        metatrain::metrics::MetricsServer::Start(listen, {coordinator.metrics_collectable()});
    if (!started.ok()) {
      const std::string message(started.status().message());
      if (absl::IsInvalidArgument(started.status())) {
        return metatrain::cli::UsageError(program, message);
      }
      std::fprintf(stderr, "metatrain-coordinator: %s\n", message.c_str());
      return 1;
    }
    metrics = std::move(started).value();
    metatrain::LogLine(absl::StrCat("metrics on ", metrics->url()));
  }
  metatrain::LogLine(absl::StrCat(
      "job paths confined to --data_root ", absl::StrJoin(options.data_roots.roots(), ","),
      " and --weights_root ", absl::StrJoin(options.weights_roots.roots(), ",")));
  // Load (and queue) the jobs of an earlier run before accepting new ones, so job ids
  // never collide with the directories already there.
  if (absl::Status started = coordinator.Start(); !started.ok()) {
    std::fprintf(stderr, "metatrain-coordinator: %s\n", std::string(started.message()).c_str());
    return 1;
  }
  const std::string listen = absl::GetFlag(FLAGS_listen);
  auto server = metatrain::coordinator::CoordinatorServer::Start(
      listen, &coordinator, absl::GetFlag(FLAGS_threads),
      absl::Seconds(absl::GetFlag(FLAGS_worker_liveness_s)));
  if (!server.ok()) {
    std::fprintf(stderr, "metatrain-coordinator: %s\n",
                 std::string(server.status().message()).c_str());
    return 1;
  }
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "localhost") {
    host = "127.0.0.1";
  }
  std::printf("listening on %s:%d\n", host.c_str(), (*server)->port());
  std::fflush(stdout);

  std::thread signal_thread([&] {
    const int signal = metatrain::WaitForShutdownSignal();
    metatrain::LogLine(absl::StrCat("signal ", signal,
                                    ", shutting down: jobs stop at a resume point; workers "
                                    "stay and reconnect to the next coordinator"));
    const absl::Time start = absl::Now();
    (*server)->Shutdown(absl::Seconds(2),
                        metatrain::coordinator::Coordinator::WorkerFate::kReconnect);
    metatrain::LogLine(absl::StrCat(
        "stopped in ",
        absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)))));
  });
  (*server)->Wait();
  signal_thread.join();
  metatrain::FlushLog();
  return 0;
}
