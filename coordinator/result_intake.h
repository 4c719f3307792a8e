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

// The gradients of one training assignment of tasks [begin, end). A worker sends each task's
// gradient as TaskGradient messages in order (the tensors' chunks, `last` on the final one);
// tasks do not interleave. Thread-compatible.
class GradientIntake {
 public:
  GradientIntake(int64_t begin, int64_t end, std::vector<meta::ParamSpec> specs,
                 at::ScalarType dtype, bool classification);

  struct Task {
    int64_t index = 0;
    meta::TensorList gradient;  // CPU, of the job's dtype and the specs' shapes, finite
    double query_loss = 0;
    double query_accuracy = 0;
  };
  struct Outcome {
    std::optional<Task> task;        // `gradient` completed this task
    std::optional<Refusal> refusal;  // `gradient` is refused; nothing of it is kept
    // `gradient` ended a task that another copy of the assignment had already delivered
    // (NOTE [Speculative duplicates] in worker_pool_source.h): nothing to apply, but the
    // task counts as done for this assignment.
    bool redundant = false;
  };

  // Takes the next message. `completed[t]` is true for tasks of the round already in
  // (completed.size() >= end): from another copy of this assignment, whose chunks for such a
  // task are dropped unread. A task sent twice by this assignment is refused. Nothing set:
  // the task's chunks are still arriving.
  // After a refusal the assignment is void; the caller drops the intake.
  Outcome Add(const v1::TaskGradient& gradient, const std::vector<char>& completed);

 private:
  const int64_t begin_, end_;
  const bool classification_;
  rpc::TensorAssembler assembler_;
  int64_t current_task_ = -1;  // the task whose chunks are arriving; -1: none
  bool skipping_ = false;      // ...and they are another copy's (dropped unread)
  std::vector<char> sent_;     // tasks of [begin, end) this assignment has delivered
};

// An evaluation assignment's AssignmentDone: exactly one finite TaskMetrics per task of
// [begin, end). On success `metrics[i]` is task begin + i's.
struct MetricsOutcome {
  std::vector<v1::TaskMetrics> metrics;
  std::optional<Refusal> refusal;
};
MetricsOutcome CheckEvaluationMetrics(const v1::AssignmentDone& done, int64_t begin, int64_t end,
                                      bool classification);

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_RESULT_INTAKE_H_
