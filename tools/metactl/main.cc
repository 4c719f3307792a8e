// metactl: the command-line client of the metatrain job API (proto/metatrain/v1/job_service.proto).
//
//   metactl [--coordinator host:port] submit JOB.json [--watch]
//   metactl [--coordinator host:port] status JOB | list | watch JOB | cancel JOB
//   metactl [--coordinator host:port] history JOB        (validation curve as CSV)
//   metactl [--coordinator host:port] fetch JOB [--which best|final] -o FILE
//   metactl [--coordinator host:port] health [--deadline 15s]   (grpc.health.v1)
//   metactl evaluate CHECKPOINT.pt --job JOB.json [--episodes DIR] [--split test|validation]
//       [--tasks N] [--inner_steps N[,N...]] [--seed S] [--verbose]   (local, no coordinator)
//   metactl algorithms      (every algorithm, its options, defaults and paper; local)
//
// TLS unless --insecure: --tls_ca FILE ($METATRAIN_TLS_CA), and for mutual TLS --tls_cert
// and --tls_key; the bearer token from --token_file ($METATRAIN_TOKEN_FILE) or
// $METATRAIN_TOKEN (docs/security.md).
// Flags may come before or after the command. Exit codes: 0 ok; 1 the job failed or was
// cancelled (watch, submit --watch) or another error; 2 usage or invalid argument; 3 not
// found; 4 coordinator unavailable (or not serving). Errors are one line on stderr:
// "metactl: INVALID_ARGUMENT: inner.lr must be > 0 (got -1)".

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cli/flags.h"
#include "common/meta/algorithm_catalog.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/rpc/client_flags.h"
#include "common/status/grpc_status.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "metatrain/v1/job_service.grpc.pb.h"
#include "tools/metactl/evaluate.h"
#include "tools/metactl/progress.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "the coordinator's address, host:port");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(15),
          "how long one call to the coordinator may take (health, submit, status, history, "
          "list, cancel; fetch allows 5m unless this is given)");
ABSL_FLAG(bool, watch, false, "submit: then follow the job until it ends, as watch does");
ABSL_FLAG(std::string, which, "best", "fetch: the best or the final checkpoint");
ABSL_FLAG(std::string, output, "", "fetch: the file to write (required)");
ABSL_FLAG(std::string, job, "",
          "evaluate: the job spec (JSON or text format) the checkpoint was trained with "
          "(required)");
ABSL_FLAG(std::string, episodes, "",
          "evaluate: a folder of your own episodes, DIR/<episode>/{support,query}/<class>/*.png; "
          "empty: sample tasks of the job's family");
ABSL_FLAG(std::string, split, "test",
          "evaluate: the split sampled tasks come from, test or validation");
ABSL_FLAG(int64_t, tasks, 0,
          "evaluate: how many tasks to sample; 0: the job's test_tasks (validation_tasks with "
          "--split validation)");
ABSL_FLAG(std::string, inner_steps, "",
          "evaluate: inner-step counts to score after, comma-separated, e.g. 1,10; empty: the "
          "job's inner.test_steps");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt,
          "evaluate: seed of the sampled tasks; unset: the job's seed");
ABSL_FLAG(bool, verbose, false, "evaluate: one line per episode");

namespace metatrain::metactl {
namespace {

constexpr char kCommands[] =
    "Commands:\n"
    "  submit JOB.json [--watch]        submit a job (JSON or text-format JobSpec); prints its id\n"
    "  status JOB                       show a job's state, progress and results\n"
    "  list                             list jobs\n"
    "  history JOB                      the job's meta-validation curve as CSV\n"
    "  watch JOB                        follow a job until it ends\n"
    "  cancel JOB                       cancel a queued or running job\n"
    "  fetch JOB [--which best|final] -o FILE\n"
    "                                   download a checkpoint (torch.save state_dict)\n"
    "  health                           check the coordinator's grpc.health.v1 service: prints\n"
    "                                   SERVING and exits 0, or fails in one line\n"
    "  evaluate CHECKPOINT.pt --job JOB.json [--episodes DIR] [--split test|validation]\n"
    "      [--tasks N] [--inner_steps N[,N...]] [--seed S] [--verbose]\n"
    "                                   meta-test a checkpoint here, on sampled tasks or on\n"
    "                                   your own episodes "
    "(DIR/<episode>/{support,query}/<class>/*.png)\n"
    "  algorithms                       list the meta-learning algorithms (JobSpec.algorithm)\n"
    "                                   with their options, defaults and papers\n"
    "Flags go before or after the command. The coordinator defaults to\n"
    "$METATRAIN_COORDINATOR, then 127.0.0.1:50051. TLS unless --insecure; the bearer token\n"
    "comes from --token_file or $METATRAIN_TOKEN (docs/security.md).\n"
    "Exit codes: 0 ok, 1 job failed/cancelled, 2 usage or invalid argument, 3 not found,\n"
    "4 coordinator unavailable, 5 not authenticated or not allowed.\n";

cli::Program MetactlProgram() {
  cli::Program program;
  program.name = "metactl";
  program.usage =
      "usage: metactl [--coordinator host:port] [--tls_ca FILE | --insecure] [--token_file FILE]\n"
      "               COMMAND ... [flags]\n"
      "The command-line client of the metatrain job API.";
  program.flag_files = {"tools/metactl/main.cc", rpc::kClientFlagsFile};
  program.epilogue = kCommands;
  program.aliases = {{"o", "output"}, {"v", "verbose"}, {"inner-steps", "inner_steps"}};
  program.env_defaults = {{"coordinator", "METATRAIN_COORDINATOR"}};
  for (auto& env : rpc::ClientSecurityEnvDefaults("METATRAIN_TOKEN_FILE")) {
    program.env_defaults.push_back(env);
  }
  return program;
}

constexpr auto kFetchDeadline = absl::Minutes(5);
// Attempts of a submit that meets UNAVAILABLE or DEADLINE_EXCEEDED (1 s, 2 s, 4 s apart).
constexpr int kSubmitAttempts = 4;

// 128 random bits in hex: SubmitJobRequest.request_id.
std::string RandomRequestId() {
  std::random_device device;
  std::string id;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&id, absl::Hex(device(), absl::kZeroPad8));
  return id;
}

enum ExitCode {
  kOk = 0,
  kJobFailed = 1,
  kUsage = 2,
  kNotFound = 3,
  kUnavailable = 4,
  kNotAllowed = 5
};

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return kUsage;
    case absl::StatusCode::kNotFound:
      return kNotFound;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kUnavailable;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kNotAllowed;
    default:
      return kJobFailed;
  }
}

// One line on stderr, whatever the message holds.
int Fail(const absl::Status& status) {
  std::string message(status.message());
  absl::StrReplaceAll({{"\r", " "}, {"\n", " "}}, &message);
  std::fprintf(stderr, "metactl: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               message.c_str());
  return ExitCodeFor(status);
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "metactl: INVALID_ARGUMENT: %s (see metactl --help)\n", message.c_str());
  return kUsage;
}

class Client {
 public:
  Client(std::string target, const rpc::ClientSecurity& security)
      : target_(std::move(target)), token_(security.token) {
    grpc::ChannelArguments args;
    rpc::AddChannelArguments(security.tls, &args);
    args.SetMaxReceiveMessageSize(64 << 20);
    // `watch` keeps a stream open for hours with nothing to say between steps; keepalive
    // pings notice a coordinator host that vanished (the server permits one per 5 s).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    auto channel = grpc::CreateCustomChannel(target_, security.credentials, args);
    stub_ = v1::JobService::NewStub(channel);
    health_stub_ = grpc::health::v1::Health::NewStub(channel);
  }

  // Converts a gRPC failure, saying which coordinator could not be reached.
  absl::Status Convert(const grpc::Status& status) const {
    absl::Status s = FromGrpcStatus(status);
    if (s.code() == absl::StatusCode::kUnavailable ||
        (s.code() == absl::StatusCode::kDeadlineExceeded && !status.error_message().empty())) {
      return absl::Status(s.code(), absl::StrCat("cannot reach the coordinator at ", target_, " (",
                                                 s.message(), ")"));
    }
    return s;
  }

  // Every call carries the bearer token; `d`: its deadline (none when infinite).
  void Prepare(grpc::ClientContext& context, absl::Duration d = absl::InfiniteDuration()) const {
    if (d != absl::InfiniteDuration()) context.set_deadline(absl::ToChronoTime(absl::Now() + d));
    rpc::AttachToken(&context, token_);
  }

  v1::JobService::Stub& stub() { return *stub_; }
  grpc::health::v1::Health::Stub& health_stub() { return *health_stub_; }
  const std::string& target() const { return target_; }

 private:
  std::string target_;
  std::string token_;
  std::unique_ptr<v1::JobService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_stub_;
};

// Follows a job until it ends; returns the exit code.
int Watch(Client& client, const std::string& job_id) {
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> stream;
  auto open = [&] {
    context = std::make_unique<grpc::ClientContext>();
    client.Prepare(*context);  // no deadline: jobs run for hours
    stream = client.stub().WatchJob(context.get(), request);
  };
  open();
  int rewatches = 0;
  const bool tty = isatty(STDOUT_FILENO) == 1;
  v1::JobEvent event;
  v1::JobStatus last;
  bool have_last = false, bar_shown = false;
  auto last_plain = std::chrono::steady_clock::now() - std::chrono::hours(1);
  int64_t last_plain_step = -1;
  auto clear_bar = [&] {
    if (bar_shown) std::fputs("\r\033[K", stdout);
    bar_shown = false;
  };
  for (;;) {
    while (stream->Read(&event)) {
      const v1::JobStatus& status = event.status();
      const bool state_changed = !have_last || status.state() != last.state();
      if (state_changed) {
        clear_bar();
        std::printf("%s: %s\n", status.job_id().c_str(), StateName(status.state()).c_str());
      }
      if (event.kind() == v1::JobEvent::VALIDATION) {
        clear_bar();
        std::printf("validation at step %lld:\n%s\n", static_cast<long long>(status.step()),
                    FormatEvaluation(status.last_validation(), "  ").c_str());
      }
      if (status.state() == v1::RUNNING || IsTerminal(status.state())) {
        if (tty) {
          std::printf("\r\033[K%s", FormatProgress(status, 30).c_str());
          bar_shown = true;
        } else {
          const auto now = std::chrono::steady_clock::now();
          const bool last_step = status.step() == status.total_steps();
          if (status.step() > 0 && status.step() != last_plain_step &&
              (now - last_plain >= std::chrono::seconds(1) || last_step ||
               IsTerminal(status.state()))) {
            std::printf("%s\n", FormatProgress(status, 0).c_str());
            last_plain = now;
            last_plain_step = status.step();
          }
        }
      }
      std::fflush(stdout);
      last = status;
      have_last = true;
      if (IsTerminal(status.state())) break;
    }
    if (!have_last || !IsTerminal(last.state())) {
      // The server ended the stream: its status says why (NOT_FOUND, UNAVAILABLE, ...).
      grpc::Status status = stream->Finish();
      // This terminal fell too far behind the job's events (the coordinator bounds what it
      // holds per watcher): watch again, which starts with the current status.
      if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && ++rewatches <= 100) {
        open();
        continue;
      }
      if (bar_shown) std::fputs("\n", stdout);
      if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
        return Fail(client.Convert(status));
      }
      return Fail(absl::UnavailableError(absl::StrCat("the coordinator at ", client.target(),
                                                      " ended the watch of ", job_id,
                                                      " before the job finished")));
    }
    break;
  }
  if (bar_shown) std::fputs("\n", stdout);
  context->TryCancel();
  stream->Finish();
  if (last.state() == v1::SUCCEEDED) {
    if (last.stopped_early())
      std::printf("stopped early at step %lld\n", static_cast<long long>(last.step()));
    std::printf("%s", FormatBestValidation(last).c_str());
    std::printf("tasks: %s\n", FormatTaskSetting(last.spec()).c_str());
    std::printf("meta-test (%lld tasks, %d inner steps), mean ± 95%% CI:\n%s\n",
                static_cast<long long>(last.test().loss_after().n()), last.test().inner_steps(),
                FormatEvaluation(last.test(), "  ").c_str());
    std::fflush(stdout);
    return kOk;
  }
  std::fflush(stdout);
  if (last.state() == v1::FAILED) {
    std::fprintf(stderr, "metactl: job %s FAILED: %s\n", job_id.c_str(), last.error().c_str());
  } else {
    std::fprintf(stderr, "metactl: job %s was CANCELLED\n", job_id.c_str());
  }
  return kJobFailed;
}

int Submit(Client& client, const std::string& path, bool watch, absl::Duration deadline) {
  auto spec = meta::ReadJobSpecFile(path);
  if (!spec.ok()) {
    // A missing job file is the user's argument, not a missing job: exit 2.
    return Fail(absl::InvalidArgumentError(spec.status().message()));
  }
  // Validate here too, so a bad spec is reported before anything is contacted; the
  // coordinator normalises the spec as sent, and checks it against its own limits.
  if (auto normalized = meta::NormalizeJobSpec(*spec, meta::JobLimits::Unlimited());
      !normalized.ok()) {
    return Fail(normalized.status());
  }
  v1::SubmitJobRequest request;
  *request.mutable_spec() = *spec;
  // A retry after a lost reply returns the job the first attempt queued (request_id).
  request.set_request_id(RandomRequestId());
  v1::SubmitJobResponse response;
  grpc::Status status;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    client.Prepare(context, deadline);
    status = client.stub().SubmitJob(&context, request, &response);
    const bool transient = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!transient || attempt == kSubmitAttempts) break;
    absl::SleepFor(absl::Seconds(1 << (attempt - 1)));
  }
  if (!status.ok()) return Fail(client.Convert(status));
  std::printf("%s\n", response.job_id().c_str());
  std::fflush(stdout);
  if (!watch) return kOk;
  return Watch(client, response.job_id());
}

// `status` and `history`: one GetJob, printed by `format`.
int PrintJob(Client& client, const std::string& job_id, absl::Duration deadline,
             std::string (*format)(const v1::JobStatus&)) {
  grpc::ClientContext context;
  client.Prepare(context, deadline);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::JobStatus response;
  grpc::Status status = client.stub().GetJob(&context, request, &response);
  if (!status.ok()) return Fail(client.Convert(status));
  std::fputs(format(response).c_str(), stdout);
  return kOk;
}

int List(Client& client, absl::Duration deadline) {
  // Every page (summaries: the table needs no validation history), one call each.
  v1::ListJobsResponse all;
  v1::ListJobsRequest request;
  request.set_page_size(1000);
  do {
    grpc::ClientContext context;
    client.Prepare(context, deadline);
    v1::ListJobsResponse page;
    grpc::Status status = client.stub().ListJobs(&context, request, &page);
    if (!status.ok()) return Fail(client.Convert(status));
    if (!page.next_page_token().empty() && page.next_page_token() == request.page_token()) break;
    for (auto& job : *page.mutable_jobs()) *all.add_jobs() = std::move(job);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  std::fputs(FormatJobTable(all).c_str(), stdout);
  return kOk;
}

int Cancel(Client& client, const std::string& job_id, absl::Duration deadline) {
  grpc::ClientContext context;
  client.Prepare(context, deadline);
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::CancelJobResponse response;
  grpc::Status status = client.stub().CancelJob(&context, request, &response);
  if (!status.ok()) return Fail(client.Convert(status));
  std::printf("%s: %s\n", job_id.c_str(), StateName(response.status().state()).c_str());
  return kOk;
}

int Fetch(Client& client, const std::string& job_id, const std::string& which,
          const std::string& out_path, absl::Duration deadline) {
  grpc::ClientContext context;
  client.Prepare(context, deadline);
  v1::FetchCheckpointRequest request;
  request.set_job_id(job_id);
  request.set_which(which);
  auto stream = client.stub().FetchCheckpoint(&context, request);
  std::string bytes;
  int64_t total = -1, step = 0;
  v1::CheckpointChunk chunk;
  absl::Status problem;
  while (stream->Read(&chunk)) {
    if (total < 0) total = chunk.total_bytes();
    step = chunk.step();
    if (problem.ok() &&
        (chunk.offset() != static_cast<int64_t>(bytes.size()) || chunk.total_bytes() != total ||
         static_cast<int64_t>(bytes.size() + chunk.data().size()) > total)) {
      problem = absl::DataLossError(absl::StrCat("checkpoint stream of ", job_id,
                                                 " is inconsistent at offset ", chunk.offset()));
    }
    if (problem.ok()) bytes += chunk.data();
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) return Fail(client.Convert(status));
  if (!problem.ok()) return Fail(problem);
  if (total < 0 || static_cast<int64_t>(bytes.size()) != total) {
    return Fail(absl::DataLossError(absl::StrCat("checkpoint of ", job_id, " ended after ",
                                                 bytes.size(), " of ", total, " bytes")));
  }
  if (absl::Status written = meta::WriteFileAtomically(out_path, bytes); !written.ok()) {
    return Fail(written);
  }
  std::printf("wrote %s checkpoint of %s (step %lld, %lld bytes) to %s\n",
              which.empty() ? "best" : which.c_str(), job_id.c_str(), static_cast<long long>(step),
              static_cast<long long>(total), out_path.c_str());
  return kOk;
}

// The coordinator's standard health service (grpc.health.v1.Health/Check) for the whole
// server; the docker-compose health check runs this.
int Health(Client& client, absl::Duration deadline) {
  grpc::ClientContext context;
  client.Prepare(context, deadline);
  grpc::health::v1::HealthCheckRequest request;  // service "": the server as a whole
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = client.health_stub().Check(&context, request, &response);
  if (!status.ok()) return Fail(client.Convert(status));
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return Fail(absl::UnavailableError(absl::StrCat(
        "the coordinator at ", client.target(), " is ",
        grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()))));
  }
  std::printf("SERVING\n");
  return kOk;
}

// `evaluate` runs here, without a coordinator.
int Evaluate(const std::vector<std::string>& arguments, const cli::CommandLine& command_line) {
  EvaluateFlags flags;
  flags.arguments = arguments;
  flags.job = absl::GetFlag(FLAGS_job);
  flags.episodes = absl::GetFlag(FLAGS_episodes);
  if (command_line.Has("split")) flags.split = absl::GetFlag(FLAGS_split);
  if (command_line.Has("tasks")) flags.tasks = absl::GetFlag(FLAGS_tasks);
  flags.inner_steps = absl::GetFlag(FLAGS_inner_steps);
  flags.seed = absl::GetFlag(FLAGS_seed);
  flags.verbose = absl::GetFlag(FLAGS_verbose);
  absl::StatusOr<EvaluateOptions> options = MakeEvaluateOptions(flags);
  if (!options.ok()) return Usage(std::string(options.status().message()));
  absl::StatusOr<EvaluationReport> report = RunEvaluation(*options);
  if (!report.ok()) return Fail(report.status());
  std::fputs(FormatReport(*report, options->verbose).c_str(), stdout);
  return kOk;
}

// A flag given with a command it does not apply to is a usage error, not silently ignored.
absl::Status CheckFlagsFitCommand(const cli::CommandLine& command_line,
                                  const std::string& command) {
  if (command_line.Has("watch") && command != "submit") {
    return absl::InvalidArgumentError("--watch goes with submit");
  }
  if ((command_line.Has("which") || command_line.Has("output")) && command != "fetch") {
    return absl::InvalidArgumentError("--which and -o go with fetch");
  }
  for (const char* flag : {"job", "episodes", "split", "tasks", "inner_steps", "seed", "verbose"}) {
    if (command_line.Has(flag) && command != "evaluate") {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " goes with evaluate"));
    }
  }
  if (command_line.Has("deadline") && (command == "watch" || command == "evaluate")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--deadline does not go with ", command,
                     command == "watch" ? " (it follows the job for as long as it runs)"
                                        : " (it runs here, without a coordinator)"));
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  const cli::Program program = MetactlProgram();
  absl::StatusOr<cli::CommandLine> parsed = cli::ParseCommandLine(program, argc, argv);
  if (!parsed.ok()) return Usage(std::string(parsed.status().message()));
  const cli::CommandLine& command_line = *parsed;
  const std::vector<std::string>& positional = command_line.positional;
  if (command_line.help || (!positional.empty() && positional[0] == "help")) {
    std::fputs(cli::HelpText(program).c_str(), stdout);
    return kOk;
  }
  if (command_line.version) {
    std::printf("%s\n", cli::VersionText(program).c_str());
    return kOk;
  }
  if (positional.empty()) {
    return Usage(
        "no command: submit, status, list, history, watch, cancel, fetch, health, evaluate or "
        "algorithms");
  }
  const std::string& command = positional[0];
  const std::vector<std::string> arguments(positional.begin() + 1, positional.end());
  if (absl::Status fits = CheckFlagsFitCommand(command_line, command); !fits.ok()) {
    return Usage(std::string(fits.message()));
  }
  if (command == "evaluate") return Evaluate(arguments, command_line);
  if (command == "algorithms") {
    if (!arguments.empty()) return Usage("algorithms takes no arguments");
    if (command_line.Has("deadline")) {
      return Usage("--deadline does not go with algorithms (it runs here, without a coordinator)");
    }
    std::fputs(meta::FormatAlgorithmCatalog().c_str(), stdout);
    return kOk;
  }

  const std::string coordinator = absl::GetFlag(FLAGS_coordinator);
  if (coordinator.empty()) return Usage("--coordinator must not be empty");
  const absl::Duration deadline = absl::GetFlag(FLAGS_deadline);
  if (deadline <= absl::ZeroDuration()) {
    return Usage(
        absl::StrCat("--deadline must be positive (got ", absl::FormatDuration(deadline), ")"));
  }
  auto want_args = [&](size_t n, const char* what) -> bool {
    return arguments.size() == n || (Usage(absl::StrCat(command, " takes ", what)), false);
  };
  auto security = rpc::ClientSecurityFromFlags("METATRAIN_TOKEN");
  if (!security.ok()) return Usage(std::string(security.status().message()));
  Client client(coordinator, *security);
  if (command == "submit") {
    if (!want_args(1, "one job file")) return kUsage;
    return Submit(client, arguments[0], absl::GetFlag(FLAGS_watch), deadline);
  }
  if (command == "status") {
    if (!want_args(1, "one job id")) return kUsage;
    return PrintJob(client, arguments[0], deadline, FormatStatus);
  }
  if (command == "history") {
    if (!want_args(1, "one job id")) return kUsage;
    return PrintJob(client, arguments[0], deadline, FormatHistoryCsv);
  }
  if (command == "list") {
    if (!want_args(0, "no arguments")) return kUsage;
    return List(client, deadline);
  }
  if (command == "watch") {
    if (!want_args(1, "one job id")) return kUsage;
    return Watch(client, arguments[0]);
  }
  if (command == "cancel") {
    if (!want_args(1, "one job id")) return kUsage;
    return Cancel(client, arguments[0], deadline);
  }
  if (command == "health") {
    if (!want_args(0, "no arguments")) return kUsage;
    return Health(client, deadline);
  }
  if (command == "fetch") {
    if (!want_args(1, "one job id")) return kUsage;
    std::string which = absl::GetFlag(FLAGS_which);
    if (which.empty()) which = "best";
    if (which != "best" && which != "final") {
      return Usage(absl::StrCat("--which must be best or final (got \"", which, "\")"));
    }
    const std::string out_path = absl::GetFlag(FLAGS_output);
    if (out_path.empty()) return Usage("fetch needs -o FILE");
    return Fetch(client, arguments[0], which, out_path,
                 command_line.Has("deadline") ? deadline : kFetchDeadline);
  }
  return Usage(absl::StrCat("unknown command \"", command, "\""));
}

}  // namespace
}  // namespace metatrain::metactl

int main(int argc, char** argv) { return metatrain::metactl::Main(argc, argv); }
