#ifndef METATRAIN_COMMON_META_GRADIENT_GROUPS_H_
#define METATRAIN_COMMON_META_GRADIENT_GROUPS_H_

// Where a meta-batch's gradient groups (JobSpec.gradient_group_size) begin and end: runs of
// `group_size` consecutive tasks, the last possibly shorter. Header-only arithmetic, shared
// by the aggregation (aggregation.h), the workers and the coordinator's result checks.

#include <algorithm>
#include <cstdint>

namespace metatrain::meta {

inline int64_t NumGroups(int64_t num_tasks, int64_t group_size) {
  return group_size <= 1 ? num_tasks : (num_tasks + group_size - 1) / group_size;
}

// Group `group`'s first task.
inline int64_t GroupBegin(int64_t group, int64_t group_size) {
  return group * std::max<int64_t>(group_size, 1);
}

// Group `group`'s tasks (0 for a group past the end).
inline int64_t GroupTasks(int64_t group, int64_t group_size, int64_t num_tasks) {
  const int64_t begin = GroupBegin(group, group_size);
  return std::max<int64_t>(0,
                           std::min(begin + std::max<int64_t>(group_size, 1), num_tasks) - begin);
}

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_GRADIENT_GROUPS_H_
