#include "common/meta/local_gradient_source.h"

#include "common/meta/aggregation.h"
#include "common/meta/task_groups.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace {

std::vector<double> ToDoubles(const at::Tensor& values) {
  at::Tensor d = values.detach().to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

}  // namespace

absl::StatusOr<TrainingRound> LocalGradientSource::ComputeTraining(int64_t step,
                                                                   const TensorList& params) {
  ASSIGN_OR_RETURN(TaskBatch tasks, job_.family->Sample(TrainingKeys(job_.spec, step), job_.dtype));
  ASSIGN_OR_RETURN(
      MetaGradients grads,
      ComputeMetaGradientsInGroups(
          *job_.learner, params, tasks,
          task_group_size_ > 0 ? task_group_size_ : job_.model->default_task_group_size(),
          threads_));
  return CatchTorch("training step results", [&] {
    TrainingRound round;
    round.group_gradients =
        SumGroups(SplitPerTask(grads.per_task), job_.spec.gradient_group_size());
    // Widening to double is exact, so the loop's mean in the job's dtype sees the same
    // values whether they came from here or from a worker.
    round.query_loss = ToDoubles(grads.query_loss);
    if (grads.query_accuracy.defined()) round.query_accuracy = ToDoubles(grads.query_accuracy);
    return round;
  });
}

absl::StatusOr<EvaluationSummary> LocalGradientSource::Evaluate(const EvaluationRequest& request,
                                                                const TensorList& params) {
  return EvaluateTasks(*job_.learner, *job_.family, params, job_.spec.seed(), request.split,
                       request.round, request.num_tasks, request.steps, job_.spec.meta_batch_size(),
                       job_.dtype);
}

}  // namespace metatrain::meta
