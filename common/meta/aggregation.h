#ifndef METATRAIN_COMMON_META_AGGREGATION_H_
#define METATRAIN_COMMON_META_AGGREGATION_H_

// Deterministic aggregation of per-task meta-gradients: a plain sum in task-index order,
// then a division by the task count. Floating-point addition is not associative, so the
// order is fixed here, once, for the trainer and the coordinator alike.

#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/params.h"

namespace metatrain::meta {

// Accumulates task gradients that arrive in any order and sums them in index order.
class TaskOrderAggregator {
 public:
  // `num_tasks` tasks, each with one tensor per spec.
  TaskOrderAggregator(std::vector<ParamSpec> specs, int64_t num_tasks);

  // Stores task `index`'s gradient (one tensor per spec, shapes must match, values finite).
  // INVALID_ARGUMENT on a bad index, shape or value; ALREADY_EXISTS on a duplicate.
  absl::Status Add(int64_t index, TensorList gradient);

  bool complete() const;
  int64_t received() const { return received_; }

  // Mean gradient, summed in task-index order. FAILED_PRECONDITION unless complete().
  absl::StatusOr<TensorList> Mean() const;

 private:
  std::vector<ParamSpec> specs_;
  std::vector<TensorList> gradients_;
  int64_t received_ = 0;
};

// Splits per_task ([T, ...] per parameter) into T per-task lists (views, no copy).
std::vector<TensorList> SplitPerTask(const TensorList& per_task);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_AGGREGATION_H_
