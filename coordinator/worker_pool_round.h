#ifndef METATRAIN_COORDINATOR_WORKER_POOL_ROUND_H_
#define METATRAIN_COORDINATOR_WORKER_POOL_ROUND_H_

// WorkerPoolSource's round and in-flight assignment state, shared by its two source files
// (worker_pool_source.cc: rounds, dispatch, results; worker_pool_recovery.cc: speculation,
// cancellation, deadlines). Internal to the coordinator library.

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "coordinator/result_intake.h"
#include "coordinator/worker_pool_source.h"

namespace metatrain::coordinator {

// NOTE [Quarantine]: workers are known by name across reconnections.
inline const std::string& QuarantineKey(const std::string& name, const std::string& id) {
  return name.empty() ? id : name;
}

struct WorkerPoolSource::Round {
  bool train = true;
  v1::TaskSplit split = v1::TASK_SPLIT_TRAIN;
  int64_t round = 0;
  int64_t version = 0;
  const meta::TensorList* params = nullptr;
  int eval_steps = 0;
  int64_t num_tasks = 0;
  // The unit of work: training rounds hand out, receive and requeue whole gradient groups
  // (JobSpec.gradient_group_size), evaluation rounds single tasks. The ranges, `completed`,
  // `attempts`, `remaining` and `gradients` below count groups.
  int64_t group_size = 1;
  int64_t num_groups = 0;

  std::deque<std::pair<int64_t, int64_t>> pending;  // [begin, end) ranges of groups
  std::vector<char> completed;
  std::vector<int> attempts;
  int64_t remaining = 0;
  absl::Status failure;

  std::vector<meta::TensorList> gradients;  // training: per group, the sum of its tasks'
  std::vector<double> loss, accuracy;       // training: per task, query metrics after adaptation
  std::vector<v1::TaskMetrics> metrics;     // evaluation

  // The tasks of groups [begin, end).
  int64_t Tasks(int64_t begin, int64_t end) const {
    return std::min(end * group_size, num_tasks) - std::min(begin * group_size, num_tasks);
  }
  // How a log line names group g.
  std::string GroupName(int64_t g) const {
    if (group_size == 1) return absl::StrCat("task ", g);
    return absl::StrCat("gradient group ", g, " (tasks ", g * group_size, "-",
                        g * group_size + Tasks(g, g + 1) - 1, ")");
  }

  absl::Time start;
  RoundTimings timings;
};

struct WorkerPoolSource::InFlight {
  int64_t id = 0;
  std::string worker_id;
  std::string worker_name;
  // Where a CancelAssignment goes (NOTE [Cancelled assignments]).
  std::shared_ptr<WorkerConnection> connection;
  int64_t begin = 0, end = 0;  // groups
  int64_t tasks = 0;           // ...and their tasks
  absl::Time sent_at;
  absl::Time deadline;
  // Training: the gradients arriving, and how many of the assignment's tasks are complete.
  std::unique_ptr<GradientIntake> intake;
  int64_t groups_done = 0;
  // NOTE [Speculative duplicates]: this assignment copies another's open tasks, or another
  // already copies this one's. Either way it is not copied (again).
  bool speculative = false;
  bool copied = false;
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_WORKER_POOL_ROUND_H_
