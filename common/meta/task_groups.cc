#include "common/meta/task_groups.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace {

TaskBatch Slice(const TaskBatch& tasks, int64_t begin, int64_t end) {
  TaskBatch out;
  out.support_x = tasks.support_x.slice(0, begin, end);
  out.support_y = tasks.support_y.slice(0, begin, end);
  out.query_x = tasks.query_x.slice(0, begin, end);
  out.query_y = tasks.query_y.slice(0, begin, end);
  return out;
}

}  // namespace

absl::StatusOr<MetaGradients> ComputeMetaGradientsInGroups(const MetaLearner& learner,
                                                           const TensorList& meta_params,
                                                           const TaskBatch& tasks,
                                                           int64_t group_size) {
  const int64_t n = tasks.size();
  if (group_size <= 0 || group_size >= n) return learner.ComputeMetaGradients(meta_params, tasks);
  std::vector<MetaGradients> groups;
  for (int64_t begin = 0; begin < n; begin += group_size) {
    const int64_t end = std::min(n, begin + group_size);
    ASSIGN_OR_RETURN(TaskBatch group,
                     CatchTorch("slicing a task group", [&] { return Slice(tasks, begin, end); }));
    ASSIGN_OR_RETURN(MetaGradients result, learner.ComputeMetaGradients(meta_params, group));
    groups.push_back(std::move(result));
  }
  return CatchTorch("joining task groups", [&] {
    MetaGradients joined;
    const size_t params = groups.front().per_task.size();
    for (size_t i = 0; i < params; ++i) {
      std::vector<at::Tensor> parts;
      for (const MetaGradients& g : groups) parts.push_back(g.per_task[i]);
      joined.per_task.push_back(at::cat(parts, 0));
    }
    std::vector<at::Tensor> losses, accuracies;
    for (const MetaGradients& g : groups) {
      losses.push_back(g.query_loss);
      if (g.query_accuracy.defined()) accuracies.push_back(g.query_accuracy);
    }
    joined.query_loss = at::cat(losses, 0);
    if (accuracies.size() == groups.size()) joined.query_accuracy = at::cat(accuracies, 0);
    return joined;
  });
}

}  // namespace metatrain::meta
