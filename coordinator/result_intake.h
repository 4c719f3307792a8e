#ifndef METATRAIN_COORDINATOR_RESULT_INTAKE_H_
#define METATRAIN_COORDINATOR_RESULT_INTAKE_H_

// The checks a worker's results pass before the coordinator uses them: a training
// assignment's gradient chunks, reassembled task by task, and an evaluation assignment's
// metrics. Everything here is a pure function of the messages and the assignment (no
// clock, no locks, no I/O), so WorkerPoolSource (worker_pool_source.h) applies what it
// accepts and the fuzzer (tests/fuzz/result_intake_fuzzer.cc) drives it with arbitrary
// bytes.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/meta/params.h"
#include "common/rpc/tensor_codec.h"
#include "metatrain/v1/worker_service.pb.h"

namespace metatrain::coordinator {

// A refused result: why (the source counts it under RejectReason kMalformed or kNonFinite)
// and what to log.
struct Refusal {
  enum Kind { kMalformed, kNonFinite };
  Kind kind = kMalformed;
  std::string message;
};

// The gradients of one training assignment of gradient groups [begin, end) (JobSpec.
// gradient_group_size; group g holds tasks [g * group_size, ...) of the round's num_tasks).
// A worker sends each group's gradient sum as TaskGradient messages in order (the tensors'
// chunks, `last` on the final one, which also carries the group's per-task query metrics);
// groups do not interleave. Thread-compatible.
class GradientIntake {
 public:
  GradientIntake(int64_t begin, int64_t end, int64_t group_size, int64_t num_tasks,
                 std::vector<meta::ParamSpec> specs, at::ScalarType dtype, bool classification);

  struct Group {
    int64_t index = 0;                   // the group's index in the round
    meta::TensorList gradient;           // CPU, of the job's dtype and the specs' shapes, finite
    std::vector<double> query_loss;      // per task of the group
    std::vector<double> query_accuracy;  // per task of the group
  };
  struct Outcome {
    std::optional<Group> group;      // `gradient` completed this group
    std::optional<Refusal> refusal;  // `gradient` is refused; nothing of it is kept
    // `gradient` ended a group that another copy of the assignment had already delivered
    // (NOTE [Speculative duplicates] in worker_pool_source.h): nothing to apply, but the
    // group counts as done for this assignment.
    bool redundant = false;
  };

  // Takes the next message. `completed[g]` is true for groups of the round already in
  // (completed.size() >= end): from another copy of this assignment, whose chunks for such a
  // group are dropped unread. A group sent twice by this assignment is refused. Nothing set:
  // the group's chunks are still arriving.
  // After a refusal the assignment is void; the caller drops the intake.
  Outcome Add(const v1::TaskGradient& gradient, const std::vector<char>& completed);

 private:
  const int64_t begin_, end_, group_size_, num_tasks_;
  const bool classification_;
  rpc::TensorAssembler assembler_;
  int64_t current_group_ = -1;  // the group whose chunks are arriving; -1: none
  bool skipping_ = false;       // ...and they are another copy's (dropped unread)
  std::vector<char> sent_;      // groups of [begin, end) this assignment has delivered
};

// An evaluation assignment's AssignmentDone: exactly one finite TaskMetrics per task of
// [begin, end). On success `metrics[i]` is task begin + i's.
struct MetricsOutcome {
  std::vector<v1::TaskMetrics> metrics;
  std::optional<Refusal> refusal;
};
MetricsOutcome CheckEvaluationMetrics(const v1::AssignmentDone& done, int64_t begin, int64_t end,
                                      bool classification);

// The assignment a worker's result message belongs to, read before it is routed to its
// job: a gradient's, a batch's (every TaskGradient of a GradientBatch must name the same
// one, and a batch is never empty) or an AssignmentDone's. nullopt: malformed (an empty
// or mixed batch, or no result at all); the coordinator counts and drops it.
std::optional<int64_t> RoutingAssignmentId(const v1::WorkerMessage& message);

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_RESULT_INTAKE_H_
