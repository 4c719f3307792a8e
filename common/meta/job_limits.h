#ifndef METATRAIN_COMMON_META_JOB_LIMITS_H_
#define METATRAIN_COMMON_META_JOB_LIMITS_H_

// Bounds on what a JobSpec may ask for, and an estimate of the memory it will take, both
// checked from the spec alone, before anything is allocated (docs/security.md, "Limits").
// The coordinator checks a job in SubmitJob with its configured limits (flags of the same
// names) and metatrain-train with the defaults, so a spec such as tasks.shots = 2e9 is
// refused in microseconds instead of making a worker allocate terabytes.
//
// Pure functions of their arguments: easy to call from a fuzz target.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

struct JobLimits {
  // Sizes of one task.
  int64_t max_ways = 1000;
  int64_t max_shots = 10000;
  int64_t max_query_size = 10000;
  int64_t max_image_size = 256;
  int64_t max_input_dim = 1 << 16;  // tasks.input_dim (linear)
  // The model.
  int64_t max_hidden_layers = 32;
  int64_t max_hidden_size = 1 << 16;
  int64_t max_filters = 1024;
  // The loops.
  int64_t max_meta_batch_size = 10000;
  int64_t max_inner_steps = 1000;  // inner.steps and inner.test_steps
  int64_t max_steps = 100000000;
  int64_t max_validation_tasks = 100000;
  int64_t max_test_tasks = 100000;
  int64_t max_patience = 1000000;  // early_stopping_patience, outer.plateau_patience
  int64_t max_workers = 100000;    // resources.max_workers
  // Strings.
  int64_t max_name_bytes = 256;
  int64_t max_path_bytes = 4096;
  // Memory, from EstimateJobMemory: one task's inner loop, and one meta-batch computed in
  // one go (what a worker holds when it takes the whole batch, and what metatrain-train
  // holds every step).
  int64_t max_task_memory_mb = 2048;
  int64_t max_meta_batch_memory_mb = 16384;
  // Meta-parameters of the model. A resume.pt holds them about four times over (Adam's
  // moments, the best parameters): at float64 25M fit the 1 GiB checkpoint limit.
  int64_t max_parameters = 25000000;

  // Every limit at its largest: validation only (metactl's check before it sends a spec to
  // a coordinator whose limits it does not know).
  static JobLimits Unlimited();
};

// What a job's spec implies, in elements and bytes. Every product saturates at INT64_MAX,
// so an absurd spec gives an absurd (not a wrapped-around) estimate.
struct JobMemoryEstimate {
  int64_t parameters = 0;               // meta-parameters (Meta-SGD: the model's, twice)
  int64_t activations_per_example = 0;  // elements one example keeps through one forward
  int64_t task_bytes = 0;               // one task's inner loop (training or evaluation), peak
  int64_t meta_batch_bytes = 0;         // meta_batch_size tasks at once, plus the parameters
};

// `input_shape` and `output_size` are the task family's (TaskFamily::input_shape(),
// output_size()); EstimateJobMemory(spec) derives them from the spec, which it can for
// every family but tensor_file (whose shapes are in the file: see EstimateTensorFileShapes).
JobMemoryEstimate EstimateJobMemory(const v1::JobSpec& normalized_spec,
                                    const std::vector<int64_t>& input_shape, int64_t output_size);

// The input shape and output size the spec implies, when the spec alone says so; false for
// tensor_file (known once the file is read).
bool ShapesFromSpec(const v1::JobSpec& normalized_spec, std::vector<int64_t>* input_shape,
                    int64_t* output_size);

// Checks every size in a normalised spec against `limits` (INVALID_ARGUMENT naming the
// field: "tasks.shots must be <= 10000 (got 2000000000)"), then, if the shapes are known
// from the spec, the memory estimate (RESOURCE_EXHAUSTED naming the limit: "the job needs
// about 3276.8 MiB per task, over the limit max_task_memory_mb=2048 (...)").
absl::Status CheckJobLimits(const v1::JobSpec& normalized_spec, const JobLimits& limits);

// The memory part alone, for shapes known only later (tensor_file, once read).
absl::Status CheckJobMemory(const v1::JobSpec& normalized_spec,
                            const std::vector<int64_t>& input_shape, int64_t output_size,
                            const JobLimits& limits);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_JOB_LIMITS_H_
