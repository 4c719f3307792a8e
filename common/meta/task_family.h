#ifndef METATRAIN_COMMON_META_TASK_FAMILY_H_
#define METATRAIN_COMMON_META_TASK_FAMILY_H_

// Task families produce batches of few-shot tasks. A task is fully determined by the job
// seed and a small TaskKey, so a coordinator sends only keys and any worker rebuilds the
// very same task from its own copy of the data.

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/meta/torch_file.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

enum class Split { kTrain = 0, kValidation = 1, kTest = 2 };
enum class LossKind { kMse, kCrossEntropy };

struct TaskKey {
  Split split = Split::kTrain;
  // Meta-step (train) or evaluation round (validation/test).
  int64_t step = 0;
  // Position in the meta-batch.
  int64_t index = 0;
};

// T tasks stacked along dimension 0.
// Regression: x [T, n, in...] float, y [T, n, out] float.
// Classification: x [T, n, C, H, W] float, y [T, n] int64 in [0, ways).
struct TaskBatch {
  at::Tensor support_x, support_y, query_x, query_y;
  int64_t size() const { return support_x.defined() ? support_x.size(0) : 0; }
};

class TaskFamily {
 public:
  virtual ~TaskFamily() = default;
  // Shape of one input example, e.g. {1} or {1, 28, 28}.
  virtual std::vector<int64_t> input_shape() const = 0;
  virtual int64_t output_size() const = 0;
  virtual LossKind loss() const = 0;
  // Builds the tasks named by `keys`, in order, in `dtype`. Deterministic in (seed, key).
  // Thread-compatible: const calls may run concurrently.
  virtual absl::StatusOr<TaskBatch> Sample(absl::Span<const TaskKey> keys,
                                           at::ScalarType dtype) const = 0;
};

// The seed of one task: mixes the job seed with the key.
uint64_t TaskSeed(uint64_t job_seed, const TaskKey& key);

// Builds the family named by spec.tasks().family(), loading data from its data_dir.
// `spec` must be normalised (see job_spec.h).
// A tensor file is read within `limits.tensor_file` (torch_file.h).
absl::StatusOr<std::unique_ptr<TaskFamily>> MakeTaskFamily(const v1::JobSpec& spec,
                                                           const JobFileLimits& limits = {});

// Concatenates batches along the task dimension (for tests and evaluation rounds).
TaskBatch ConcatTaskBatches(const std::vector<TaskBatch>& batches);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_TASK_FAMILY_H_
