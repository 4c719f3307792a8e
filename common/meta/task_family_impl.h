#ifndef METATRAIN_COMMON_META_TASK_FAMILY_IMPL_H_
#define METATRAIN_COMMON_META_TASK_FAMILY_IMPL_H_

// Constructors of the concrete task families, for MakeTaskFamily and tests. Internal to
// common/meta: callers outside use MakeTaskFamily.

#include <memory>

#include "absl/status/statusor.h"
#include "common/data/image_dataset.h"
#include "common/meta/task_family.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

// y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5] (the MAML paper).
std::unique_ptr<TaskFamily> MakeSinusoidTasks(const v1::TaskSpec& spec, uint64_t seed);

// y = w.x + b + noise, w, b ~ N(0, 1), x ~ U[-5, 5]^input_dim.
std::unique_ptr<TaskFamily> MakeLinearTasks(const v1::TaskSpec& spec, uint64_t seed);

// N-way K-shot classification over an in-memory few-shot dataset. Training tasks are
// `train_ways`-way (protonet.train_ways; 0: spec.ways), validation and test tasks
// spec.ways-way; output_size() is spec.ways. INVALID_ARGUMENT if a split has fewer classes
// than its tasks' ways or a class fewer than shots + query_size examples.
absl::StatusOr<std::unique_ptr<TaskFamily>> MakeImageClassificationTasks(
    data::FewShotDataset dataset, const v1::TaskSpec& spec, uint64_t seed, int64_t train_ways = 0);

// A procedural labelled image set for tests and CI: every class is a fixed random pattern
// of blobs and strokes; examples add jitter, contrast changes and pixel noise.
// Deterministic in `seed`. 64 train / 16 validation / 20 test classes, 20 examples each.
data::FewShotDataset MakeSyntheticImageDataset(const v1::TaskSpec& spec, uint64_t seed);

// Tasks read from a torch.save'd dict {support_x, support_y, query_x, query_y}.
absl::StatusOr<std::unique_ptr<TaskFamily>> MakeTensorFileTasks(const v1::JobSpec& spec,
                                                                const TorchFileLimits& limits = {});

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_TASK_FAMILY_IMPL_H_
