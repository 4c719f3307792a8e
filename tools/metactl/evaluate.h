#ifndef METATRAIN_TOOLS_METACTL_EVALUATE_H_
#define METATRAIN_TOOLS_METACTL_EVALUATE_H_

// `metactl evaluate`: meta-tests a checkpoint in this process, without a coordinator.
//
//   metactl evaluate CHECKPOINT.pt --job JOB.json [--episodes DIR] [--split test|validation]
//       [--tasks N] [--inner_steps N[,N...]] [--seed S] [--verbose]
//
// Without --episodes it samples tasks of the job's family exactly as the job's own
// meta-test does (meta::EvaluateTasks with the job's seed, round 0 and meta-batch size), so
// a job's checkpoint reproduces the job's reported meta-test bit for bit. With --episodes it
// adapts to each user-supplied episode (common/data/episodes.h layout) on its support set
// and scores its query set, the pixels preprocessed as the job's task family preprocesses
// its own images (Omniglot inverted to 255 = ink, then every family scales to [0, 1]).
//
// Everything here is synchronous and single-threaded; errors are values (LibTorch
// exceptions are caught), never crashes.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/episodes.h"
#include "common/meta/evaluation.h"
#include "common/meta/trainer.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::metactl {

struct EvaluateOptions {
  std::string checkpoint;        // a state_dict (checkpoint.h)
  std::string job;               // JSON or text-format JobSpec
  std::string episodes;          // empty: sample tasks of the job's family
  std::string split = "test";    // "test" or "validation" (sampled tasks only)
  int64_t tasks = 0;             // 0: the job's test_tasks (validation: validation_tasks)
  std::vector<int> inner_steps;  // empty: the job's inner.test_steps
  std::optional<uint64_t> seed;  // unset: the job's seed
  bool verbose = false;          // per-episode lines
};

// What the command line of `metactl evaluate` gave, read by metactl's absl flags (the
// flags live in tools/metactl/main.cc: a library must not define flags). Unset optionals:
// the flag was not given.
struct EvaluateFlags {
  std::vector<std::string> arguments;  // the positional arguments after "evaluate"
  std::string job;
  std::string episodes;
  std::optional<std::string> split;
  std::optional<int64_t> tasks;
  std::string inner_steps;  // "N[,N...]"; empty: the job's inner.test_steps
  std::optional<uint64_t> seed;
  bool verbose = false;
};

// Checks the flags and their combination. INVALID_ARGUMENT naming the flag.
absl::StatusOr<EvaluateOptions> MakeEvaluateOptions(const EvaluateFlags& flags);

// Per-episode scores (episodes mode): query loss and accuracy before and after adaptation.
struct EpisodeScore {
  std::string name;
  int64_t ways = 0, support = 0, query = 0;
  double loss_before = 0, loss_after = 0, accuracy_before = 0, accuracy_after = 0;
};

struct EvaluationRun {
  int inner_steps = 0;
  meta::EvaluationSummary summary;     // over tasks or episodes
  std::vector<EpisodeScore> episodes;  // episodes mode only
};

struct EvaluationReport {
  std::string header;               // one line: what was evaluated on what
  std::vector<std::string> notes;   // e.g. Meta-SGD rates absent from the checkpoint
  std::vector<EvaluationRun> runs;  // one per --inner_steps value
  // false for algorithms without an inner loop (protonet): one run, "before" = "after".
  bool inner_loop = true;
};

// Loads the checkpoint into the learner's meta-parameter layout. Meta-SGD's "lr.*" rates
// may be missing (a plain model state_dict): they are then inner.lr, and `note` says so.
// INVALID_ARGUMENT naming the tensor for a missing, misshapen or unexpected entry;
// NOT_FOUND for a missing file; INVALID_ARGUMENT for a corrupt one.
absl::StatusOr<meta::TensorList> LoadCheckpointParams(const meta::JobContext& job,
                                                      const std::string& path,
                                                      std::string* note = nullptr);

// One episode as a one-task batch for `job`'s model, pixels preprocessed as the job's task
// family does. INVALID_ARGUMENT naming the episode when its number of classes, channels or
// image size differs from what the model takes, or the family has no image convention.
absl::StatusOr<meta::TaskBatch> EpisodeToTask(const meta::JobContext& job,
                                              const data::Episode& episode);

// Runs the whole evaluation.
absl::StatusOr<EvaluationReport> RunEvaluation(const EvaluateOptions& options);

// What `metactl evaluate` prints (metactl's FormatEvaluation lines, mean ± 95% CI).
std::string FormatReport(const EvaluationReport& report, bool verbose);

}  // namespace metatrain::metactl

#endif  // METATRAIN_TOOLS_METACTL_EVALUATE_H_
