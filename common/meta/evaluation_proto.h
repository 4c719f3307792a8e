#ifndef METATRAIN_COMMON_META_EVALUATION_PROTO_H_
#define METATRAIN_COMMON_META_EVALUATION_PROTO_H_

// An evaluation summary in the job API's terms (metatrain.v1.EvaluationResult), so the
// coordinator's job status and metactl's local evaluation report results identically.

#include "common/meta/evaluation.h"
#include "metatrain/v1/job_service.pb.h"

namespace metatrain::meta {

v1::EvaluationResult ToEvaluationResult(const EvaluationSummary& summary, int inner_steps);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_EVALUATION_PROTO_H_
