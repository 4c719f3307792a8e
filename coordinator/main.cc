// metatrain-coordinator: serves the job API and the worker sessions on one port.
//
//   metatrain-coordinator (--tls_cert FILE --tls_key FILE [--tls_client_ca FILE] | --insecure)
//                         [--tokens_file FILE] [--worker_token_file FILE]
//                         [--listen HOST:PORT] [--checkpoint_dir DIR] [--max_running_jobs N]
//                         [--threads N] [--[no]resume] [--assignment_timeout_s S]
//                         [--no_worker_timeout 30m] [--quarantine_after N]
//                         [--quarantine_backoff 30s] [--[no]speculative_duplicates]
//                         [--metrics_listen HOST:PORT]
//                         [--metrics_retention 10m] [--max_queued_jobs_per_token N]

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/cli/flags.h"
#include "common/logging/log.h"
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
  options.no_worker_timeout = absl::GetFlag(FLAGS_no_worker_timeout);
  options.speculative_duplicates = absl::GetFlag(FLAGS_speculative_duplicates);
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
