#ifndef METATRAIN_COMMON_META_JOB_SPEC_H_
#define METATRAIN_COMMON_META_JOB_SPEC_H_

// Reading, defaulting and validating JobSpecs. Every entry point (the CLI, the demo, the
// coordinator's SubmitJob) runs a spec through NormalizeJobSpec before using it, so the
// rest of the code sees explicit values only.

#include <string>

#include "absl/status/statusor.h"
#include "common/meta/job_limits.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

// Parses JSON (proto3 mapping) or, if the text does not start with '{', text format.
absl::StatusOr<v1::JobSpec> ParseJobSpec(const std::string& text);
absl::StatusOr<v1::JobSpec> ReadJobSpecFile(const std::string& path);
std::string JobSpecToJson(const v1::JobSpec& spec);

// Fills defaults (documented in job.proto) and validates. INVALID_ARGUMENT with the
// field's path in the message, e.g. "tasks.shots must be > 0 (got -1)". Then checks the
// spec against `limits` (job_limits.h; the one-argument form: the default limits):
// INVALID_ARGUMENT naming the field for a size over its limit, RESOURCE_EXHAUSTED naming
// the limit for a job whose estimated memory is over it.
absl::StatusOr<v1::JobSpec> NormalizeJobSpec(v1::JobSpec spec);
absl::StatusOr<v1::JobSpec> NormalizeJobSpec(v1::JobSpec spec, const JobLimits& limits);

bool IsClassificationFamily(const std::string& family);

// The type of a device as workers name it (Hello.device, metatrain-worker --device):
// "cpu" for "cpu" or "" (the default), "cuda" for "cuda" or "cuda:N"; INVALID_ARGUMENT for
// anything else. JobSpec.resources.device_type holds such a type.
absl::StatusOr<std::string> DeviceType(const std::string& device);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_JOB_SPEC_H_
