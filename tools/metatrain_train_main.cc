// metatrain-train: runs one meta-training job in this process.
//
//   metatrain-train --job examples/sinusoid_maml.json [--steps N] [--out ckpt.pt]
//                   [--threads N] [--seed S]
//
// Prints progress (in place on a terminal), validation results and the final meta-test.
// Any error: one line on stderr, exit status 2 (usage errors end "(see metatrain-train
// --help)").

#include <ATen/Parallel.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/cli/flags.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/meta/runtime.h"
#include "common/meta/trainer.h"
#include "common/status/status_macros.h"

ABSL_FLAG(std::string, job, "", "the job spec, JSON or protobuf text format (required)");
ABSL_FLAG(int64_t, steps, 0, "meta-steps to run instead of the job's steps; 0: the job's");
ABSL_FLAG(std::string, out, "",
          "where to save the best meta-parameters (a state_dict); empty: not saved");
ABSL_FLAG(int, threads, 1,
          "threads computing a meta-batch's task groups at once (each task on one thread; the "
          "bits do not depend on it)");
ABSL_FLAG(int64_t, task_group_size, 0,
          "compute a meta-batch's meta-gradients this many tasks at a time (0: the model's "
          "default, 1 for the conv net and the batch split over --threads for MLPs): peak "
          "memory follows the group, the results are the same bits");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt,
          "seed instead of the job's seed; unset: the job's");

namespace metatrain {
namespace {

struct Options {
  std::string job, out;
  int64_t steps = 0;
  int threads = 1;
  int64_t task_group_size = 0;
  std::optional<uint64_t> seed;
};

cli::Program TrainProgram() {
  cli::Program program;
  program.name = "metatrain-train";
  program.usage =
      "usage: metatrain-train --job SPEC.json [--steps N] [--out CHECKPOINT.pt] [--threads N]\n"
      "                       [--task_group_size N] [--seed S]\n"
      "Runs one meta-training job in this process, without coordinator or workers. Prints\n"
      "progress, validation results and the final meta-test; any error is one line on\n"
      "stderr and exit status 2.";
  program.flag_files = {"tools/metatrain_train_main.cc"};
  return program;
}

// The flags' values, checked; INVALID_ARGUMENT naming the flag.
absl::StatusOr<Options> OptionsFromFlags(const cli::CommandLine& command_line) {
  if (!command_line.positional.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", command_line.positional[0], "\""));
  }
  Options o;
  o.job = absl::GetFlag(FLAGS_job);
  o.out = absl::GetFlag(FLAGS_out);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.task_group_size = absl::GetFlag(FLAGS_task_group_size);
  o.seed = absl::GetFlag(FLAGS_seed);
  if (command_line.Has("steps") && o.steps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--steps must be a positive integer (got '", o.steps, "')"));
  }
  if (o.threads <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads must be a positive integer (got '", o.threads, "')"));
  }
  if (o.task_group_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--task_group_size must be >= 0 (got '", o.task_group_size, "')"));
  }
  if (o.job.empty()) return absl::InvalidArgumentError("--job is required");
  return o;
}

std::string FormatDuration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

absl::Status Run(const Options& options) {
  metatrain::meta::ConfigureRuntime();
  ASSIGN_OR_RETURN(v1::JobSpec spec, meta::ReadJobSpecFile(options.job));
  if (options.steps > 0) spec.set_steps(options.steps);
  if (options.seed.has_value()) spec.set_seed(*options.seed);
  ASSIGN_OR_RETURN(spec, meta::NormalizeJobSpec(spec));
  ASSIGN_OR_RETURN(meta::JobContext job, meta::MakeJobContext(spec));

  std::printf("job %s: %s on %s, %d-shot%s, meta-batch %d, %lld steps, seed %llu\n",
              spec.name().empty() ? "(unnamed)" : spec.name().c_str(), spec.algorithm().c_str(),
              spec.tasks().family().c_str(), spec.tasks().shots(),
              meta::IsClassificationFamily(spec.tasks().family())
                  ? absl::StrCat(" ", spec.tasks().ways(), "-way").c_str()
                  : "",
              spec.meta_batch_size(), static_cast<long long>(spec.steps()),
              static_cast<unsigned long long>(spec.seed()));
  std::fflush(stdout);

  const bool tty = isatty(STDOUT_FILENO);
  const int64_t every = std::max<int64_t>(1, spec.steps() / 20);
  const auto start = std::chrono::steady_clock::now();
  double loss_sum = 0;
  int64_t loss_count = 0;
  bool line_open = false;
  auto on_step = [&](const meta::StepReport& r) {
    loss_sum += r.train_loss;
    ++loss_count;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double eta = elapsed / r.step * (spec.steps() - r.step);
    const bool print = tty || r.step % every == 0 || r.step == spec.steps();
    if (print) {
      std::string line = absl::StrFormat(
          "step %*d/%d  loss %.4f%s  lr %.3g  %.0f tasks/s  elapsed %s  ETA %s",
          static_cast<int>(absl::StrCat(spec.steps()).size()), r.step, spec.steps(),
          loss_sum / loss_count,
          r.train_accuracy >= 0 ? absl::StrFormat("  acc %.1f%%", 100 * r.train_accuracy) : "",
          r.lr, r.tasks_per_second, FormatDuration(elapsed), FormatDuration(eta));
      if (tty) {
        std::printf("\r\033[K%s", line.c_str());
        line_open = true;
      } else {
        std::printf("%s\n", line.c_str());
      }
      loss_sum = 0;
      loss_count = 0;
    }
    if (r.validation) {
      if (line_open) std::printf("\n");
      line_open = false;
      std::printf("  validation after step %lld: %s\n", static_cast<long long>(r.step),
                  r.validation->ToString().c_str());
    }
    std::fflush(stdout);
    return true;
  };
  ASSIGN_OR_RETURN(meta::TrainingResult result,
                   meta::Train(job, on_step, options.threads, options.task_group_size));
  if (line_open) std::printf("\n");
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("trained %lld steps in %s%s\n", static_cast<long long>(result.steps_run),
              FormatDuration(elapsed).c_str(), result.stopped_early ? " (stopped early)" : "");
  std::printf("meta-test (%d inner steps): %s\n", spec.inner().test_steps(),
              result.test.ToString().c_str());
  if (!options.out.empty()) {
    RETURN_IF_ERROR(meta::SaveStateDict(
        options.out, meta::ToStateDict(job.learner->meta_param_specs(), result.best_params)));
    std::printf("checkpoint: %s\n", options.out.c_str());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace metatrain

int main(int argc, char** argv) {
  const metatrain::cli::Program program = metatrain::TrainProgram();
  const metatrain::cli::CommandLine command_line =
      metatrain::cli::ParseCommandLineOrExit(program, argc, argv);
  absl::StatusOr<metatrain::Options> options = metatrain::OptionsFromFlags(command_line);
  if (!options.ok()) return metatrain::cli::UsageError(program, options.status().message());
  const absl::Status status = metatrain::Run(*options);
  if (!status.ok()) {
    std::fflush(stdout);
    std::fprintf(stderr, "metatrain-train: %s\n", std::string(status.message()).c_str());
    return 2;
  }
  return 0;
}
