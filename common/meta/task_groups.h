#ifndef METATRAIN_COMMON_META_TASK_GROUPS_H_
#define METATRAIN_COMMON_META_TASK_GROUPS_H_

// The memory/speed knob of second-order meta-learning: compute a batch's meta-gradients
// `group_size` tasks at a time instead of all at once.
//
// A learner computes a batch as one batched computation, so the graphs of all its tasks
// (second order: the inner loop's graph, differentiated again) are alive together: peak
// memory grows with the batch. In groups, each group's graphs are freed before the next
// group starts, so peak memory follows the group size; small groups pay more per-op
// overhead (most for small models, where batching is what makes the core fast).
//
// The bits do not change: MetaLearner::ComputeMetaGradients promises that task t's result
// depends only on the meta-parameters and task t, never on the other tasks of the batch
// (tests/common/meta/batch_independence_test.cc, task_groups_test.cc), so a group's results
// are the whole batch's results for those tasks. The knob is therefore a per-process
// setting (metatrain-worker --task_group_size, metatrain-core-bench --task_group_size),
// not part of the job.

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/meta/learner.h"

namespace metatrain::meta {

// `group_size` <= 0, or >= the batch: one call for the whole batch.
absl::StatusOr<MetaGradients> ComputeMetaGradientsInGroups(const MetaLearner& learner,
                                                           const TensorList& meta_params,
                                                           const TaskBatch& tasks,
                                                           int64_t group_size);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_TASK_GROUPS_H_
