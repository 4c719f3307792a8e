// Fuzz target: the coordinator's intake of a worker's results (coordinator/result_intake.h),
// the checks every WorkerMessage of a session passes before its gradients or metrics reach
// the meta-update. The input is a flags byte and then a stream of v1::WorkerMessage
// (fuzz_util.h ParseDelimited), as a worker would send them for one assignment, gradients
// alone or in GradientBatches. Properties checked beyond "no crash": a message is routed to
// an assignment only when it names exactly one; an accepted task is one of the assignment's
// open tasks, with a gradient of the specs' shapes and dtype, finite values and finite
// metrics; accepted evaluation metrics are one finite set per task, in task order; every
// refusal says why.

#include <ATen/ATen.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/meta/gradient_groups.h"
#include "coordinator/result_intake.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace coordinator = metatrain::coordinator;
namespace meta = metatrain::meta;
namespace v1 = metatrain::v1;

const std::vector<meta::ParamSpec>& Specs() {
  static const auto* specs = new std::vector<meta::ParamSpec>{
      {"net.0.weight", {2, 1}, false},
      {"net.0.bias", {2}, false},
      {"net.2.weight", {1, 2}, true},
  };
  return *specs;
}

void CheckRefusal(const coordinator::Refusal& refusal) {
  FUZZ_CHECK(!refusal.message.empty(), "refusal without a message");
  FUZZ_CHECK(refusal.kind == coordinator::Refusal::kMalformed ||
                 refusal.kind == coordinator::Refusal::kNonFinite,
             "unknown refusal kind");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // Bit 0: a classification job (accuracies must be finite too); bits 1-2: where the
  // assignment's three gradient groups start in the round; bit 3: groups of 2 tasks (the
  // round's last group of one), else of one.
  const bool classification = data[0] & 1;
  const int64_t begin = (data[0] >> 1) & 3;
  const int64_t end = begin + 3;
  const int64_t group_size = (data[0] & 8) ? 2 : 1;
  const int64_t num_tasks = end * group_size - (group_size - 1);
  const auto messages = metatrain::fuzz::ParseDelimited<v1::WorkerMessage>(data + 1, size - 1, 64);

  std::vector<char> completed(end, 0);
  // Tasks before the assignment belong to other workers; one of them is already in.
  if (begin > 0) completed[0] = 1;
  auto intake = std::make_unique<coordinator::GradientIntake>(begin, end, group_size, num_tasks,
                                                              Specs(), at::kFloat, classification);
  // One TaskGradient, as the source hands it over; false when refused (the assignment is
  // void then, and its open tasks go to a fresh one).
  auto take = [&](const v1::TaskGradient& gradient) {
    auto outcome = intake->Add(gradient, completed);
    FUZZ_CHECK(!(outcome.group && outcome.refusal), "a group both accepted and refused");
    if (outcome.refusal) {
      CheckRefusal(*outcome.refusal);
      intake = std::make_unique<coordinator::GradientIntake>(begin, end, group_size, num_tasks,
                                                             Specs(), at::kFloat, classification);
      return false;
    }
    if (!outcome.group) return true;
    const auto& task = *outcome.group;
    FUZZ_CHECK(task.index >= begin && task.index < end, "group outside the assignment");
    FUZZ_CHECK(!completed[task.index], "a group accepted twice");
    completed[task.index] = 1;
    const auto tasks = static_cast<size_t>(meta::GroupTasks(task.index, group_size, num_tasks));
    FUZZ_CHECK(task.query_loss.size() == tasks && task.query_accuracy.size() == tasks,
               "wrong number of query metrics");
    for (size_t k = 0; k < tasks; ++k) {
      FUZZ_CHECK(std::isfinite(task.query_loss[k]), "non-finite loss accepted");
      FUZZ_CHECK(!classification || std::isfinite(task.query_accuracy[k]),
                 "non-finite accuracy accepted");
    }
    FUZZ_CHECK(task.gradient.size() == Specs().size(), "wrong number of tensors");
    for (size_t i = 0; i < Specs().size(); ++i) {
      const at::Tensor& t = task.gradient[i];
      FUZZ_CHECK(t.scalar_type() == at::kFloat && t.sizes() == at::IntArrayRef(Specs()[i].shape),
                 Specs()[i].name + ": wrong dtype or shape");
      FUZZ_CHECK(meta::AllFinite(t), Specs()[i].name + ": non-finite gradient accepted");
    }
    return true;
  };
  for (const auto& message : messages) {
    // Routing first, as the coordinator does before a message reaches its job.
    const std::optional<int64_t> routed = coordinator::RoutingAssignmentId(message);
    if (message.has_gradient()) {
      FUZZ_CHECK(routed && *routed == message.gradient().assignment_id(), "gradient misrouted");
      take(message.gradient());
    } else if (message.has_gradients()) {
      const auto& batch = message.gradients().gradients();
      bool one_assignment = !batch.empty();
      for (const v1::TaskGradient& g : batch) {
        one_assignment = one_assignment && g.assignment_id() == batch[0].assignment_id();
      }
      FUZZ_CHECK(routed.has_value() == one_assignment, "an empty or mixed batch routed");
      if (!routed) continue;
      FUZZ_CHECK(*routed == batch[0].assignment_id(), "batch misrouted");
      for (const v1::TaskGradient& gradient : batch) {
        if (!take(gradient)) break;
      }
    } else if (message.has_done()) {
      auto outcome =
          coordinator::CheckEvaluationMetrics(message.done(), begin, end, classification);
      if (outcome.refusal) {
        CheckRefusal(*outcome.refusal);
        FUZZ_CHECK(outcome.metrics.empty(), "metrics returned with a refusal");
        continue;
      }
      FUZZ_CHECK(static_cast<int64_t>(outcome.metrics.size()) == end - begin,
                 "wrong number of metrics");
      for (int64_t t = begin; t < end; ++t) {
        const v1::TaskMetrics& m = outcome.metrics[t - begin];
        FUZZ_CHECK(m.task_index() == t, "metrics out of task order");
        FUZZ_CHECK(std::isfinite(m.loss_before()) && std::isfinite(m.loss_after()),
                   "non-finite loss accepted");
        FUZZ_CHECK(!classification ||
                       (std::isfinite(m.accuracy_before()) && std::isfinite(m.accuracy_after())),
                   "non-finite accuracy accepted");
      }
    }
  }
  return 0;
}
