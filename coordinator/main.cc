// metatrain-coordinator: serves the job API and the worker sessions on one port.
//
//   metatrain-coordinator (--tls_cert FILE --tls_key FILE [--tls_client_ca FILE] | --insecure)
//                         [--tokens_file FILE] [--worker_token_file FILE]
//                         [--listen HOST:PORT] [--checkpoint_dir DIR] [--max_running_jobs N]
//                         [--threads N] [--[no]resume] [--assignment_timeout_s S]
//                         [--no_worker_timeout 30m] [--quarantine_after N]
//                         [--quarantine_backoff 30s] [--[no]speculative_duplicates]
//                         [--deadline_factor X] [--min_deadline 10s]
//                         [--metrics_listen HOST:PORT]
//                         [--metrics_retention 10m] [--max_queued_jobs_per_token N]
//                         [--data_root DIRS] [--weights_root DIRS] [--max_task_memory_mb N] ...

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cli/flags.h"
#include "common/logging/log.h"
#include "common/meta/runtime.h"
#include "common/metrics/metrics_server.h"
#include "common/process/shutdown_signals.h"
#include "common/rpc/credentials.h"
#include "coordinator/coordinator.h"
#include "coordinator/rpc/auth.h"
#include "coordinator/rpc/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "host:port to serve on (0.0.0.0:50051 for every interface); port 0 picks a free port "
          "(printed on stdout)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain the server presents (TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle for mutual TLS: workers must present a certificate it signed; empty: "
          "no client certificates");
ABSL_FLAG(bool, insecure, false,
          "serve plaintext gRPC without TLS (a warning is logged); required when --tls_cert is "
          "not given");
ABSL_FLAG(std::string, tokens_file, "",
          "job API bearer tokens, lines \"<role> <token>\" with role admin (everything) or read "
          "(get, list, watch, fetch); re-read when it changes; empty: the job API is open "
          "(a warning is logged)");
ABSL_FLAG(std::string, worker_token_file, "",
          "join tokens workers must send, one per line; re-read when it changes; empty: "
          "workers join without one");
ABSL_FLAG(int, max_queued_jobs_per_token, 64,
          "jobs one job API token may have queued at once (RESOURCE_EXHAUSTED beyond); 0: no "
          "limit");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "where jobs keep best.pt, final.pt and resume.pt (<dir>/<job_id>/); empty: memory only");
ABSL_FLAG(int, max_running_jobs, 1, "jobs trained at the same time over the worker pool");
ABSL_FLAG(int, threads, 0, "max gRPC polling threads for the job API (0: gRPC's default)");
ABSL_FLAG(bool, resume, true, "on start, resume unfinished jobs found in --checkpoint_dir");
ABSL_FLAG(int, assignment_timeout_s, 600,
          "seconds a worker may take for one assignment before its tasks go elsewhere");
ABSL_FLAG(absl::Duration, no_worker_timeout, absl::Minutes(30),
          "a job that has had no live worker of its device type for this long fails (UNAVAILABLE) "
          "instead of waiting; 0: wait for ever");
ABSL_FLAG(bool, speculative_duplicates, true,
          "once a step has no unassigned tasks left, idle workers also compute a slower worker's "
          "open tasks; the first result wins (the bits are the same either way)");
ABSL_FLAG(double, deadline_factor, 20,
          "an assignment is late after this many times the job's median time per task (x its "
          "tasks), within [--min_deadline, --assignment_timeout_s]; for workers that have "
          "completed one of the job's assignments. 0: --assignment_timeout_s only");
ABSL_FLAG(absl::Duration, min_deadline, absl::Seconds(10),
          "the shortest deadline --deadline_factor may give an assignment");
ABSL_FLAG(int, quarantine_after, 3,
          "failures in a row (refused results, missed deadlines) after which a worker is left out "
          "of every job for --quarantine_backoff, doubled on each repeat up to 10m; 0: never");
ABSL_FLAG(absl::Duration, quarantine_backoff, absl::Seconds(30),
          "how long a worker's first quarantine lasts");
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
ABSL_FLAG(int64_t, max_worker_outbox_mb, 1024,
          "unsent messages one worker session may hold; a worker further behind is "
          "disconnected (RESOURCE_EXHAUSTED) and reconnects");

namespace {

metatrain::cli::Program CoordinatorProgram() {
  metatrain::cli::Program program;
  program.name = "metatrain-coordinator";
  program.usage =
      "usage: metatrain-coordinator (--tls_cert FILE --tls_key FILE | --insecure)\n"
      "                             [--tokens_file FILE] [--worker_token_file FILE]\n"
      "                             [--listen HOST:PORT] [--checkpoint_dir DIR] [flags]\n"
      "Queues meta-training jobs, hands their tasks to workers, aggregates, validates and\n"
      "checkpoints; serves the job API and the worker sessions on one port, and prints\n"
      "\"listening on HOST:PORT\" on stdout once it accepts connections.";
  program.flag_files = {"coordinator/main.cc"};
  program.env_defaults = {{"tls_cert", "METATRAIN_TLS_CERT"},
                          {"tls_key", "METATRAIN_TLS_KEY"},
                          {"tls_client_ca", "METATRAIN_TLS_CLIENT_CA"},
                          {"tokens_file", "METATRAIN_TOKENS_FILE"},
                          {"worker_token_file", "METATRAIN_WORKER_TOKEN_FILE"}};
  program.epilogue =
      "SIGINT or SIGTERM stops it within seconds: it reports NOT_SERVING, each running job\n"
      "stops at its last finished step and, with --checkpoint_dir, resumes from there when\n"
      "the coordinator is started again; workers stay and reconnect to it.\n"
      "Security (TLS, tokens, roles): docs/security.md.";
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
  // The coordinator decodes, sums and steps the meta-gradients of the core: its tensors
  // (a gradient per task, 0.8 MiB each on the FC job) churn like a worker's
  // (NOTE [Allocator churn], common/meta/runtime.h).
  metatrain::meta::ConfigureRuntime();
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
  options.no_worker_timeout = absl::GetFlag(FLAGS_no_worker_timeout);
  options.speculative_duplicates = absl::GetFlag(FLAGS_speculative_duplicates);
  options.deadline_factor = absl::GetFlag(FLAGS_deadline_factor);
  options.min_deadline = absl::GetFlag(FLAGS_min_deadline);
  options.quarantine.failures_to_quarantine = absl::GetFlag(FLAGS_quarantine_after);
  options.quarantine.backoff = absl::GetFlag(FLAGS_quarantine_backoff);
  options.quarantine.max_backoff = std::max(options.quarantine.backoff, absl::Minutes(10));
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
  if (options.quarantine.failures_to_quarantine < 0) {
    return metatrain::cli::UsageError(program, "--quarantine_after must be >= 0");
  }
  if (options.quarantine.backoff <= absl::ZeroDuration()) {
    return metatrain::cli::UsageError(program, "--quarantine_backoff must be positive");
  }
  if (!(options.deadline_factor >= 0) || options.deadline_factor > 1e6) {
    return metatrain::cli::UsageError(program,
                                      absl::StrCat("--deadline_factor must be in [0, 1e6] (got ",
                                                   absl::GetFlag(FLAGS_deadline_factor), ")"));
  }
  if (options.min_deadline <= absl::ZeroDuration()) {
    return metatrain::cli::UsageError(program, "--min_deadline must be positive");
  }
  if (options.no_worker_timeout < absl::ZeroDuration()) {
    return metatrain::cli::UsageError(program, "--no_worker_timeout must not be negative");
  }
  if (options.metrics_retention < absl::ZeroDuration()) {
    return metatrain::cli::UsageError(program, "--metrics_retention must not be negative");
  }
  if (options.max_running_jobs < 1) {
    return metatrain::cli::UsageError(program, absl::StrCat("--max_running_jobs must be >= 1 (got ",
                                                            options.max_running_jobs, ")"));
  }
  if (absl::GetFlag(FLAGS_max_queued_jobs_per_token) < 0) {
    return metatrain::cli::UsageError(
        program, absl::StrCat("--max_queued_jobs_per_token must be >= 0 (got ",
                              absl::GetFlag(FLAGS_max_queued_jobs_per_token), ")"));
  }
  metatrain::rpc::ServerTlsOptions tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  tls.insecure = absl::GetFlag(FLAGS_insecure);
  auto credentials = metatrain::rpc::MakeServerCredentials(tls);
  if (!credentials.ok()) {
    return metatrain::cli::UsageError(program, credentials.status().message());
  }
  metatrain::coordinator::Authorizer::Options auth_options;
  auth_options.tokens_file = absl::GetFlag(FLAGS_tokens_file);
  auth_options.worker_token_file = absl::GetFlag(FLAGS_worker_token_file);
  auth_options.require_worker_certificate = !tls.client_ca_file.empty();
  auto authorizer = metatrain::coordinator::Authorizer::Create(auth_options);
  if (!authorizer.ok()) return metatrain::cli::UsageError(program, authorizer.status().message());
  metatrain::coordinator::ServerSecurity security;
  security.credentials = *credentials;
  security.authorizer = authorizer->get();
  security.max_queued_jobs_per_token = absl::GetFlag(FLAGS_max_queued_jobs_per_token);
  const std::string listen = absl::GetFlag(FLAGS_listen);
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
      {"--max_worker_outbox_mb", absl::GetFlag(FLAGS_max_worker_outbox_mb), nullptr,
       &options.max_worker_outbox_bytes},
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
  // After every check of the flags: a usage error stays one line.
  if (tls.insecure) {
    metatrain::LogLine(absl::StrCat("WARNING: --insecure: plaintext gRPC on ", listen,
                                    "; whoever can reach it can read and alter the traffic, "
                                    "tokens included"));
  }
  if ((*authorizer)->job_api_open()) {
    metatrain::LogLine(absl::StrCat("WARNING: no --tokens_file: anyone who can reach ", listen,
                                    " can submit, cancel and download jobs"));
  }
  if ((*authorizer)->workers_open()) {
    metatrain::LogLine(
        absl::StrCat("WARNING: no --worker_token_file or --tls_client_ca: anyone "
                     "who can reach ",
                     listen, " can join as a worker and send gradients"));
  }
  auto server = metatrain::coordinator::CoordinatorServer::Start(
      listen, &coordinator, absl::GetFlag(FLAGS_threads),
      absl::Seconds(absl::GetFlag(FLAGS_worker_liveness_s)), security);
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
