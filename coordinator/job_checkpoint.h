#ifndef METATRAIN_COORDINATOR_JOB_CHECKPOINT_H_
#define METATRAIN_COORDINATOR_JOB_CHECKPOINT_H_

// What a job keeps on disk, in <checkpoint_dir>/<job_id>/:
//   best.pt    state_dict of the best meta-validation parameters (torch.load reads it)
//   final.pt   state_dict of the parameters after the last step
//   resume.pt  everything needed to continue the run bit-identically (below)
//   resume.prev.pt  the resume.pt before the last one: a restart falls back to it when
//              resume.pt is missing, unreadable or fails its checksum
// resume.pt is itself a torch.save'd dict of tensors, so Python can inspect it:
//   "params.<name>"        meta-parameters after `step` steps
//   "best.<name>"          best parameters so far (absent before the first validation)
//   "optimizer.<key>"      OuterOptimizer::State()
//   "step"                 int64 scalar: steps completed
//   "validation_losses"    float64 [k]: every meta-validation loss so far, in order; the
//                          plateau schedule and early stopping are replayed from it (with
//                          the accuracies of status.validation_history, for
//                          select_best_by "accuracy")
//   "status"               uint8: the serialised v1::JobStatus (spec, state, metrics)
//   "spec_json"            uint8: the normalised JobSpec as JSON, for people
//   "checksum"             int64 scalar: CRC-32 of every other entry (torch.save's format
//                          does not detect a flipped bit in tensor data)
// Task sampling needs no state: tasks derive from (seed, TaskKey) and the step.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/checkpoint.h"
#include "common/meta/params.h"
#include "metatrain/v1/job_service.pb.h"

namespace metatrain::coordinator {

struct ResumeState {
  v1::JobStatus status;
  int64_t step = 0;
  meta::TensorList params;
  std::map<std::string, at::Tensor> optimizer_state;
  std::vector<double> validation_losses;
  meta::TensorList best_params;  // empty until the first validation
};

inline constexpr char kResumeFile[] = "resume.pt";
inline constexpr char kBestFile[] = "best.pt";
inline constexpr char kFinalFile[] = "final.pt";
inline constexpr char kPreviousResumeFile[] = "resume.prev.pt";

// DATA_LOSS when `dict` has a checksum and it does not match (files from before checksums
// have none and pass).
absl::Status VerifyResumeChecksum(const meta::StateDict& dict);

struct LoadedResume {
  meta::StateDict dict;
  std::string file;      // kResumeFile, or kPreviousResumeFile when resume.pt was unusable
  std::string rejected;  // why resume.pt was not used; empty when it was
};
// resume.pt of `job_dir` if it loads and passes its checksum, else resume.prev.pt; DATA_LOSS
// naming what was wrong with each when neither is usable.
// Each file is read within `limits` (--max_checkpoint_mb; torch_file.h).
absl::StatusOr<LoadedResume> LoadResumeDict(const std::string& job_dir,
                                            const meta::TorchFileLimits& limits = {});
// Whether `job_dir` holds resume.pt or resume.prev.pt (the job has started).
bool HasResumeFile(const std::string& job_dir);

absl::StatusOr<std::string> SerializeResumeState(const ResumeState& state,
                                                 const std::vector<meta::ParamSpec>& specs);

// First stage of reading: the job's status (and so its spec) without the tensors' layout.
absl::StatusOr<v1::JobStatus> ResumeStatusFromDict(const meta::StateDict& dict);

// Second stage, once the job's specs are known. INVALID_ARGUMENT naming the missing key.
absl::StatusOr<ResumeState> ResumeStateFromDict(const meta::StateDict& dict,
                                                const std::vector<meta::ParamSpec>& specs,
                                                at::ScalarType dtype);

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_JOB_CHECKPOINT_H_
