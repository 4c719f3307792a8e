#ifndef METATRAIN_COMMON_META_JOB_PATHS_H_
#define METATRAIN_COMMON_META_JOB_PATHS_H_

// The paths a JobSpec names (tasks.data_dir, tasks.tensor_file, initial_weights), confined
// to the roots a program was configured with (common/files/confined_path.h). The
// coordinator checks them in SubmitJob and resolves them again, right before it reads the
// files, into the spec it loads from; a worker does the same with its own roots.

#include "absl/status/statusor.h"
#include "common/files/confined_path.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

// Roots per field; null leaves the field as it is (not checked, not rewritten).
struct JobPathRoots {
  const files::ConfinedRoots* data_dir = nullptr;
  const files::ConfinedRoots* tensor_file = nullptr;
  const files::ConfinedRoots* initial_weights = nullptr;
};

// A copy of `spec` with each non-empty path replaced by its canonical form under its roots.
// INVALID_ARGUMENT "<field> '<path>': not found under <setting>" for any path that is
// missing or outside its roots (NOTE [One answer for missing and forbidden]).
absl::StatusOr<v1::JobSpec> ResolveJobPaths(const v1::JobSpec& spec, const JobPathRoots& roots);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_JOB_PATHS_H_
