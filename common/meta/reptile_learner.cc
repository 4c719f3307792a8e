#include "common/meta/reptile_learner.h"

#include <string>
#include <utility>

#include "common/meta/inner_loop.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace {

internal::InnerRule SgdRule(size_t num_params, double lr) {
  internal::InnerRule rule;
  rule.lr = lr;
  rule.adapt.assign(num_params, true);
  return rule;
}

}  // namespace

ReptileLearner::ReptileLearner(std::shared_ptr<const Model> model, LossKind loss, int inner_steps,
                               double inner_lr)
    : model_(std::move(model)), loss_(loss), inner_steps_(inner_steps), inner_lr_(inner_lr) {}

TensorList ReptileLearner::InitialMetaParams(Rng& rng, at::ScalarType dtype) const {
  return model_->Initialize(rng, dtype);
}

absl::StatusOr<MetaGradients> ReptileLearner::ComputeMetaGradients(const TensorList& meta_params,
                                                                   const TaskBatch& tasks) const {
  RETURN_IF_ERROR(internal::ValidateMetaParams(meta_param_specs(), meta_params));
  RETURN_IF_ERROR(internal::ValidateTaskBatch(*model_, loss_, tasks, meta_params[0].scalar_type()));
  return CatchTorch("meta-gradient", [&] { return Compute(meta_params, tasks); });
}

MetaGradients ReptileLearner::Compute(const TensorList& meta_params, const TaskBatch& tasks) const {
  const int64_t t = tasks.size();
  TensorList theta = internal::Replicate(meta_params, t, /*requires_grad=*/false);
  const at::Tensor x = at::cat({tasks.support_x, tasks.query_x}, 1);
  const at::Tensor y = at::cat({tasks.support_y, tasks.query_y}, 1);
  TensorList phi = internal::AdaptWithoutGraph(*model_, loss_, SgdRule(theta.size(), inner_lr_),
                                               theta, x, y, inner_steps_);
  MetaGradients result;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < theta.size(); ++i) result.per_task.push_back(theta[i] - phi[i]);
  internal::QueryMetrics(*model_, loss_, phi, tasks.query_x, tasks.query_y, &result.query_loss,
                         &result.query_accuracy);
  return result;
}

absl::StatusOr<Adaptation> ReptileLearner::Evaluate(const TensorList& meta_params,
                                                    const TaskBatch& tasks, int steps) const {
  RETURN_IF_ERROR(internal::ValidateMetaParams(meta_param_specs(), meta_params));
  RETURN_IF_ERROR(internal::ValidateTaskBatch(*model_, loss_, tasks, meta_params[0].scalar_type()));
  if (steps < 0) {
    return absl::InvalidArgumentError("evaluation steps must be >= 0 (got " +
                                      std::to_string(steps) + ")");
  }
  return CatchTorch("evaluation", [&] {
    TensorList phi = internal::Replicate(meta_params, tasks.size(), /*requires_grad=*/false);
    Adaptation result;
    internal::QueryMetrics(*model_, loss_, phi, tasks.query_x, tasks.query_y, &result.loss_before,
                           &result.accuracy_before);
    const internal::InnerRule rule = SgdRule(phi.size(), inner_lr_);
    phi = internal::AdaptWithoutGraph(*model_, loss_, rule, std::move(phi), tasks.support_x,
                                      tasks.support_y, steps);
    internal::QueryMetrics(*model_, loss_, phi, tasks.query_x, tasks.query_y, &result.loss_after,
                           &result.accuracy_after);
    return result;
  });
}

}  // namespace metatrain::meta
