#include "common/meta/job_paths.h"

#include "common/status/status_macros.h"

namespace metatrain::meta {

absl::StatusOr<v1::JobSpec> ResolveJobPaths(const v1::JobSpec& spec, const JobPathRoots& roots) {
  v1::JobSpec out = spec;
  auto* tasks = out.mutable_tasks();
  if (roots.data_dir != nullptr && !tasks->data_dir().empty()) {
    ASSIGN_OR_RETURN(std::string path,
                     roots.data_dir->Resolve("tasks.data_dir", tasks->data_dir()));
    tasks->set_data_dir(path);
  }
  if (roots.tensor_file != nullptr && !tasks->tensor_file().empty()) {
    ASSIGN_OR_RETURN(std::string path,
                     roots.tensor_file->Resolve("tasks.tensor_file", tasks->tensor_file()));
    tasks->set_tensor_file(path);
  }
  if (roots.initial_weights != nullptr && !out.initial_weights().empty()) {
    ASSIGN_OR_RETURN(std::string path,
                     roots.initial_weights->Resolve("initial_weights", out.initial_weights()));
    out.set_initial_weights(path);
  }
  return out;
}

}  // namespace metatrain::meta
