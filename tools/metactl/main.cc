// metactl: the command-line client of the metatrain job API (proto/metatrain/v1/job_service.proto).
//
//   metactl [--coordinator host:port] submit JOB.json [--watch]
//   metactl [--coordinator host:port] status JOB | list | watch JOB | cancel JOB
//   metactl [--coordinator host:port] history JOB        (validation curve as CSV)
//   metactl [--coordinator host:port] fetch JOB [--which best|final] -o FILE
//   metactl evaluate CHECKPOINT.pt --job JOB.json [--episodes DIR] [--split test|validation]
//       [--tasks N] [--inner_steps N[,N...]] [--seed S] [--verbose]   (local, no coordinator)
//
// Exit codes: 0 ok; 1 the job failed or was cancelled (watch, submit --watch) or another
// error; 2 usage or invalid argument; 3 not found; 4 coordinator unavailable. Errors are
// one line on stderr: "metactl: INVALID_ARGUMENT: inner.lr must be > 0 (got -1)".

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/status/grpc_status.h"
#include "metatrain/v1/job_service.grpc.pb.h"
#include "tools/metactl/evaluate.h"
#include "tools/metactl/progress.h"

namespace metatrain::metactl {
namespace {

constexpr char kUsageText[] =
    "usage: metactl [--coordinator host:port] COMMAND ...\n"
    "  submit JOB.json [--watch]        submit a job (JSON or text-format JobSpec); prints its id\n"
    "  status JOB                       show a job's state, progress and results\n"
    "  list                             list jobs\n"
    "  history JOB                      the job's meta-validation curve as CSV\n"
    "  watch JOB                        follow a job until it ends\n"
    "  cancel JOB                       cancel a queued or running job\n"
    "  fetch JOB [--which best|final] -o FILE\n"
    "                                   download a checkpoint (torch.save state_dict)\n"
    "  evaluate CHECKPOINT.pt --job JOB.json [--episodes DIR] [--split test|validation]\n"
    "      [--tasks N] [--inner_steps N[,N...]] [--seed S] [--verbose]\n"
    "                                   meta-test a checkpoint here, on sampled tasks or on\n"
    "                                   your own episodes "
    "(DIR/<episode>/{support,query}/<class>/*.png)\n"
    "The coordinator defaults to $METATRAIN_COORDINATOR, then 127.0.0.1:50051.\n"
    "Exit codes: 0 ok, 1 job failed/cancelled, 2 usage or invalid argument, 3 not found,\n"
    "4 coordinator unavailable.\n";

constexpr auto kUnaryDeadline = std::chrono::seconds(15);
constexpr auto kFetchDeadline = std::chrono::seconds(300);

enum ExitCode { kOk = 0, kJobFailed = 1, kUsage = 2, kNotFound = 3, kUnavailable = 4 };

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
  explicit Client(std::string target) : target_(std::move(target)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    // `watch` keeps a stream open for hours with nothing to say between steps; keepalive
    // pings notice a coordinator host that vanished (the server permits one per 5 s).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    stub_ = v1::JobService::NewStub(
        grpc::CreateCustomChannel(target_, grpc::InsecureChannelCredentials(), args));
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

  void SetDeadline(grpc::ClientContext& context, std::chrono::seconds d) const {
    context.set_deadline(std::chrono::system_clock::now() + d);
  }

  v1::JobService::Stub& stub() { return *stub_; }
  const std::string& target() const { return target_; }

 private:
  std::string target_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

// Follows a job until it ends; returns the exit code.
int Watch(Client& client, const std::string& job_id) {
  grpc::ClientContext context;  // no deadline: a job may run for hours
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  auto stream = client.stub().WatchJob(&context, request);
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
  if (bar_shown) std::fputs("\n", stdout);
  if (!have_last || !IsTerminal(last.state())) {
    // The server ended the stream: its status says why (NOT_FOUND, UNAVAILABLE, ...).
    grpc::Status status = stream->Finish();
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      return Fail(client.Convert(status));
    }
    return Fail(absl::UnavailableError(absl::StrCat("the coordinator at ", client.target(),
                                                    " ended the watch of ", job_id,
                                                    " before the job finished")));
  }
  context.TryCancel();
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

int Submit(Client& client, const std::string& path, bool watch) {
  auto spec = meta::ReadJobSpecFile(path);
  if (!spec.ok()) {
    // A missing job file is the user's argument, not a missing job: exit 2.
    return Fail(absl::InvalidArgumentError(spec.status().message()));
  }
  // Validate here too, so a bad spec is reported before anything is contacted; the
  // coordinator normalises the spec as sent.
  if (auto normalized = meta::NormalizeJobSpec(*spec); !normalized.ok()) {
    return Fail(normalized.status());
  }
  grpc::ClientContext context;
  client.SetDeadline(context, kUnaryDeadline);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = *spec;
  v1::SubmitJobResponse response;
  grpc::Status status = client.stub().SubmitJob(&context, request, &response);
  if (!status.ok()) return Fail(client.Convert(status));
  std::printf("%s\n", response.job_id().c_str());
  std::fflush(stdout);
  if (!watch) return kOk;
  return Watch(client, response.job_id());
}

// `status` and `history`: one GetJob, printed by `format`.
int PrintJob(Client& client, const std::string& job_id,
             std::string (*format)(const v1::JobStatus&)) {
  grpc::ClientContext context;
  client.SetDeadline(context, kUnaryDeadline);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::JobStatus response;
  grpc::Status status = client.stub().GetJob(&context, request, &response);
  if (!status.ok()) return Fail(client.Convert(status));
  std::fputs(format(response).c_str(), stdout);
  return kOk;
}

int List(Client& client) {
  grpc::ClientContext context;
  client.SetDeadline(context, kUnaryDeadline);
  v1::ListJobsResponse response;
  grpc::Status status = client.stub().ListJobs(&context, v1::ListJobsRequest(), &response);
  if (!status.ok()) return Fail(client.Convert(status));
  std::fputs(FormatJobTable(response).c_str(), stdout);
  return kOk;
}

int Cancel(Client& client, const std::string& job_id) {
  grpc::ClientContext context;
  client.SetDeadline(context, kUnaryDeadline);
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::CancelJobResponse response;
  grpc::Status status = client.stub().CancelJob(&context, request, &response);
  if (!status.ok()) return Fail(client.Convert(status));
  std::printf("%s: %s\n", job_id.c_str(), StateName(response.status().state()).c_str());
  return kOk;
}

int Fetch(Client& client, const std::string& job_id, const std::string& which,
          const std::string& out_path) {
  grpc::ClientContext context;
  client.SetDeadline(context, kFetchDeadline);
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

// `evaluate` runs here, without a coordinator, and has flags of its own.
int Evaluate(const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsageText, stdout);
      return kOk;
    }
  }
  absl::StatusOr<EvaluateOptions> options = ParseEvaluateArgs(args);
  if (!options.ok()) return Usage(std::string(options.status().message()));
  absl::StatusOr<EvaluationReport> report = RunEvaluation(*options);
  if (!report.ok()) return Fail(report.status());
  std::fputs(FormatReport(*report, options->verbose).c_str(), stdout);
  return kOk;
}

int Main(int argc, char** argv) {
  // The first word that is neither a flag nor --coordinator's value names the command.
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--coordinator") {
      ++i;
    } else if (arg.empty() || arg[0] != '-') {
      if (arg != "evaluate") break;
      return Evaluate(std::vector<std::string>(argv + i + 1, argv + argc));
    }
  }
  const char* env = std::getenv("METATRAIN_COORDINATOR");
  std::string coordinator = (env != nullptr && *env != '\0') ? env : "127.0.0.1:50051";
  std::string which, out_path;
  bool watch = false;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "help") {
      std::fputs(kUsageText, stdout);
      return kOk;
    }
    auto value_of = [&](const std::string& flag, std::string& value) -> bool {
      if (arg == flag) {
        if (i + 1 >= argc) return false;
        value = argv[++i];
        return true;
      }
      value = arg.substr(flag.size() + 1);
      return true;
    };
    if (arg == "--coordinator" || arg.rfind("--coordinator=", 0) == 0) {
      if (!value_of("--coordinator", coordinator)) return Usage("--coordinator needs a value");
    } else if (arg == "--which" || arg.rfind("--which=", 0) == 0) {
      if (!value_of("--which", which)) return Usage("--which needs a value");
    } else if (arg == "-o" || arg == "--output" || arg.rfind("--output=", 0) == 0) {
      if (arg == "-o") arg = "--output";
      if (!value_of("--output", out_path)) return Usage("-o needs a file name");
    } else if (arg == "--watch") {
      watch = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return Usage(absl::StrCat("unknown flag ", arg));
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.empty()) {
    std::fputs(kUsageText, stderr);
    return kUsage;
  }
  if (coordinator.empty()) return Usage("--coordinator must not be empty");
  const std::string& command = positional[0];
  auto want_args = [&](size_t n, const char* what) -> bool {
    return positional.size() == n + 1 || (Usage(absl::StrCat(command, " takes ", what)), false);
  };
  if (watch && command != "submit") return Usage("--watch goes with submit");
  if ((!which.empty() || !out_path.empty()) && command != "fetch") {
    return Usage("--which and -o go with fetch");
  }
  Client client(coordinator);
  if (command == "submit") {
    if (!want_args(1, "one job file")) return kUsage;
    return Submit(client, positional[1], watch);
  }
  if (command == "status") {
    if (!want_args(1, "one job id")) return kUsage;
    return PrintJob(client, positional[1], FormatStatus);
  }
  if (command == "history") {
    if (!want_args(1, "one job id")) return kUsage;
    return PrintJob(client, positional[1], FormatHistoryCsv);
  }
  if (command == "list") {
    if (!want_args(0, "no arguments")) return kUsage;
    return List(client);
  }
  if (command == "watch") {
    if (!want_args(1, "one job id")) return kUsage;
    return Watch(client, positional[1]);
  }
  if (command == "cancel") {
    if (!want_args(1, "one job id")) return kUsage;
    return Cancel(client, positional[1]);
  }
  if (command == "fetch") {
    if (!want_args(1, "one job id")) return kUsage;
    if (which.empty()) which = "best";
    if (which != "best" && which != "final") {
      return Usage(absl::StrCat("--which must be best or final (got \"", which, "\")"));
    }
    if (out_path.empty()) return Usage("fetch needs -o FILE");
    return Fetch(client, positional[1], which, out_path);
  }
  return Usage(absl::StrCat("unknown command \"", command, "\""));
}

}  // namespace
}  // namespace metatrain::metactl

int main(int argc, char** argv) { return metatrain::metactl::Main(argc, argv); }
