#ifndef METATRAIN_COMMON_META_AGGREGATION_H_
#define METATRAIN_COMMON_META_AGGREGATION_H_

// Deterministic aggregation of meta-gradients: per-task gradients are summed in task order
// within each gradient group (JobSpec.gradient_group_size: fixed runs of consecutive tasks),
// the group sums in group order, and the total divided by the task count. Floating-point
// addition is not associative, so the order is fixed here, once, for the trainer, the
// workers (which send group sums) and the coordinator alike. With groups of one task it is
// the plain task-order sum ((g0 + g1) + g2) + ...

#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/gradient_groups.h"
#include "common/meta/params.h"

namespace metatrain::meta {

// Accumulates group sums that arrive in any order and sums them in group order.
class TaskOrderAggregator {
 public:
  // `num_groups` group sums, each with one tensor per spec, of `num_tasks` tasks in all
  // (the divisor of Mean; num_tasks <= 0: one task per group).
  TaskOrderAggregator(std::vector<ParamSpec> specs, int64_t num_groups, int64_t num_tasks = 0);

  // Stores group `index`'s gradient sum (one tensor per spec, shapes must match).
  // INVALID_ARGUMENT on a bad index, shape or dtype; ALREADY_EXISTS on a duplicate.
  absl::Status Add(int64_t index, TensorList gradient);

  bool complete() const;
  int64_t received() const { return received_; }

  // Mean gradient: the group sums added in group order, divided by the task count.
  // FAILED_PRECONDITION unless complete(); INVALID_ARGUMENT when it is not finite (a
  // non-finite gradient was added, or the sum overflowed).
  absl::StatusOr<TensorList> Mean() const;

 private:
  std::vector<ParamSpec> specs_;
  std::vector<TensorList> gradients_;
  int64_t num_tasks_;
  int64_t received_ = 0;
};

// The sum of gradients[begin, end) (equal layouts), added left to right into a new tensor per
// parameter: a gradient group's sum. One task: a contiguous copy of its gradient.
TensorList SumInOrder(const std::vector<TensorList>& gradients, size_t begin, size_t end);

// Per-task gradients, in task order, to the sums of consecutive groups of `group_size` tasks
// (the last group may be shorter). group_size 1 returns the gradients as they are.
std::vector<TensorList> SumGroups(std::vector<TensorList> per_task, int64_t group_size);

// Splits per_task ([T, ...] per parameter) into T per-task lists (views, no copy).
std::vector<TensorList> SplitPerTask(const TensorList& per_task);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_AGGREGATION_H_
