#ifndef METATRAIN_COMMON_META_TASK_GROUPS_H_
#define METATRAIN_COMMON_META_TASK_GROUPS_H_

// How a process computes a batch's meta-gradients: in groups of `group_size` tasks, on
// `threads` threads at once.
//
// Memory: a learner computes a batch as one batched computation, so the graphs of all its
// tasks (second order: the inner loop's graph, differentiated again) are alive together
// and peak memory grows with the batch. In groups, each group's graphs are freed when the
// group ends, so peak memory follows group size x threads; small groups pay more per-op
// overhead (most for small models, where batching is what makes the core fast).
//
// Threads: NOTE [One intra-op thread per task] (runtime.h). A process computes with one
// LibTorch intra-op thread, and its cores work on different task groups instead.
//
// The bits do not change with either setting: MetaLearner::ComputeMetaGradients promises
// that task t's result depends only on the meta-parameters and task t, never on the other
// tasks of the batch or on which thread ran it (tests/common/meta/batch_independence_test.cc,
// task_groups_test.cc), so a group's results are the whole batch's results for those
// tasks. Both knobs are therefore per-process settings (metatrain-worker --threads and
// --task_group_size, metatrain-train --threads, metatrain-core-bench), not part of the job.

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "common/meta/learner.h"

namespace metatrain::meta {

// `group_size` <= 0: the batch split evenly over `threads` (one group when `threads` <= 1).
// `threads` <= 1: the groups one after another on the calling thread.
// `cancelled` (optional, thread-safe) is asked before each group starts: once it returns
// true no further group starts and the call returns CANCELLED (a worker whose assignment
// was cancelled stops within one group).
absl::StatusOr<MetaGradients> ComputeMetaGradientsInGroups(
    const MetaLearner& learner, const TensorList& meta_params, const TaskBatch& tasks,
    int64_t group_size, int threads = 1, const std::function<bool()>& cancelled = {});

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_TASK_GROUPS_H_
