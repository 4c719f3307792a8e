#include "common/meta/task_groups.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
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

absl::StatusOr<MetaGradients> ComputeGroup(const MetaLearner& learner,
                                           const TensorList& meta_params, const TaskBatch& tasks,
                                           int64_t begin, int64_t end) {
  ASSIGN_OR_RETURN(TaskBatch group,
                   CatchTorch("slicing a task group", [&] { return Slice(tasks, begin, end); }));
  return learner.ComputeMetaGradients(meta_params, group);
}

absl::StatusOr<MetaGradients> Join(const std::vector<MetaGradients>& groups) {
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

}  // namespace

absl::StatusOr<MetaGradients> ComputeMetaGradientsInGroups(const MetaLearner& learner,
                                                           const TensorList& meta_params,
                                                           const TaskBatch& tasks,
                                                           int64_t group_size, int threads,
                                                           const std::function<bool()>& cancelled) {
  const int64_t n = tasks.size();
  threads = std::max(1, threads);
  if (group_size <= 0) group_size = (n + threads - 1) / threads;
  auto stop = [&] { return cancelled && cancelled(); };
  if (stop()) return absl::CancelledError("assignment cancelled");
  if (group_size <= 0 || group_size >= n) return learner.ComputeMetaGradients(meta_params, tasks);
  const int64_t group_count = (n + group_size - 1) / group_size;
  std::vector<std::optional<absl::StatusOr<MetaGradients>>> results(group_count);
  // Each thread takes the next group until none is left; results land by group index, so
  // the joined batch is in task order whichever thread finished first.
  std::atomic<int64_t> next_group{0};
  std::atomic<bool> stopped{false};
  auto work = [&] {
    for (int64_t g = next_group++; g < group_count; g = next_group++) {
      if (stopped || (g > 0 && stop())) {
        stopped = true;
        results[g] = absl::CancelledError("assignment cancelled");
        continue;
      }
      const int64_t begin = g * group_size;
      // Nothing may escape a thread: the learners catch LibTorch's errors, this the rest.
      try {
        results[g] =
            ComputeGroup(learner, meta_params, tasks, begin, std::min(n, begin + group_size));
      } catch (const std::exception& e) {
        results[g] = absl::InternalError(absl::StrCat("computing a task group: ", e.what()));
      }
    }
  };
  const int64_t helpers = std::min<int64_t>(threads, group_count) - 1;
  std::vector<std::thread> pool;
  pool.reserve(helpers);
  for (int64_t i = 0; i < helpers; ++i) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  std::vector<MetaGradients> groups;
  groups.reserve(group_count);
  for (auto& result : results) {
    if (!result->ok()) return result->status();
    groups.push_back(*std::move(*result));
  }
  return Join(groups);
}

}  // namespace metatrain::meta
