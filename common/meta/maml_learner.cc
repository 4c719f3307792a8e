#include "common/meta/maml_learner.h"

#include <torch/csrc/autograd/autograd.h>

#include <string>
#include <utility>

#include "common/meta/inner_loop.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {

MamlLearner::MamlLearner(std::shared_ptr<const Model> model, LossKind loss, Options options)
    : model_(std::move(model)), loss_(loss), options_(options) {
  specs_ = model_->param_specs();
  num_model_params_ = specs_.size();
  for (const ParamSpec& spec : model_->param_specs()) {
    adapt_.push_back(!options_.head_only || spec.head);
  }
  if (options_.learn_inner_lr) {
    for (const ParamSpec& spec : model_->param_specs()) {
      specs_.push_back(ParamSpec{"lr." + spec.name, spec.shape, spec.head});
    }
  }
}

TensorList MamlLearner::InitialMetaParams(Rng& rng, at::ScalarType dtype) const {
  TensorList params = model_->Initialize(rng, dtype);
  if (options_.learn_inner_lr) {
    for (size_t i = 0; i < num_model_params_; ++i) {
      params.push_back(
          at::full(specs_[i].shape, options_.inner_lr, at::TensorOptions().dtype(dtype)));
    }
  }
  return params;
}

absl::StatusOr<MetaGradients> MamlLearner::ComputeMetaGradients(const TensorList& meta_params,
                                                                const TaskBatch& tasks) const {
  RETURN_IF_ERROR(internal::ValidateMetaParams(specs_, meta_params));
  RETURN_IF_ERROR(internal::ValidateTaskBatch(*model_, loss_, tasks, meta_params[0].scalar_type()));
  return CatchTorch("meta-gradient", [&] { return Compute(meta_params, tasks); });
}

MetaGradients MamlLearner::Compute(const TensorList& meta_params, const TaskBatch& tasks) const {
  at::AutoGradMode grad_mode(true);
  const int64_t t = tasks.size();
  const bool second_order = options_.second_order;
  const TensorList model_params(meta_params.begin(), meta_params.begin() + num_model_params_);
  // Leaves: the replicated meta-parameters (and Meta-SGD's rates); row t is task t's.
  TensorList phi0 = internal::Replicate(model_params, t, /*requires_grad=*/true);
  internal::InnerRule rule;
  rule.lr = options_.inner_lr;
  rule.adapt = adapt_;
  if (options_.learn_inner_lr) {
    const TensorList rates(meta_params.begin() + num_model_params_, meta_params.end());
    rule.alphas = internal::Replicate(rates, t, /*requires_grad=*/true);
  }

  TensorList phi = phi0;
  for (int step = 0; step < options_.inner_steps; ++step) {
    std::vector<at::Tensor> inputs;
    std::vector<size_t> index;
    for (size_t i = 0; i < phi.size(); ++i) {
      if (!adapt_[i]) continue;
      inputs.push_back(phi[i]);
      index.push_back(i);
    }
    at::Tensor total =
        internal::PerTaskLoss(loss_, model_->Forward(phi, tasks.support_x), tasks.support_y).sum();
    auto grads = torch::autograd::grad({total}, inputs, {}, /*retain_graph=*/second_order,
                                       /*create_graph=*/second_order);
    for (size_t k = 0; k < index.size(); ++k) {
      const size_t i = index[k];
      phi[i] = internal::InnerUpdate(rule, i, phi[i], grads[k]);
    }
    if (!second_order) {
      // First order: the adapted parameters are treated as constants of theta; only
      // the query gradient at them counts.
      for (auto& p : phi) p = p.detach().requires_grad_(true);
    }
  }

  at::Tensor query_out = model_->Forward(phi, tasks.query_x);
  at::Tensor query_loss = internal::PerTaskLoss(loss_, query_out, tasks.query_y);
  // FOMAML differentiates wrt the adapted parameters (fresh leaves); the second-order
  // variants wrt phi0 through the whole inner loop.
  TensorList wrt = second_order || options_.inner_steps == 0 ? phi0 : phi;
  if (options_.learn_inner_lr) wrt.insert(wrt.end(), rule.alphas.begin(), rule.alphas.end());
  auto grads = torch::autograd::grad({query_loss.sum()}, wrt, {}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);

  MetaGradients result;
  result.per_task.reserve(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    result.per_task.push_back(grads[i].defined() ? grads[i].detach()
                                                 : at::zeros_like(wrt[i]).detach());
  }
  result.query_loss = query_loss.detach();
  if (loss_ == LossKind::kCrossEntropy) {
    result.query_accuracy = internal::PerTaskAccuracy(query_out.detach(), tasks.query_y);
  }
  return result;
}

absl::StatusOr<Adaptation> MamlLearner::Evaluate(const TensorList& meta_params,
                                                 const TaskBatch& tasks, int steps) const {
  RETURN_IF_ERROR(internal::ValidateMetaParams(specs_, meta_params));
  RETURN_IF_ERROR(internal::ValidateTaskBatch(*model_, loss_, tasks, meta_params[0].scalar_type()));
  if (steps < 0) {
    return absl::InvalidArgumentError("evaluation steps must be >= 0 (got " +
                                      std::to_string(steps) + ")");
  }
  return CatchTorch("evaluation", [&] { return Adapt(meta_params, tasks, steps); });
}

absl::StatusOr<TensorList> MamlLearner::AdaptedParams(const TensorList& meta_params,
                                                      const TaskBatch& tasks, int steps) const {
  RETURN_IF_ERROR(internal::ValidateMetaParams(specs_, meta_params));
  RETURN_IF_ERROR(internal::ValidateTaskBatch(*model_, loss_, tasks, meta_params[0].scalar_type()));
  if (steps < 0) {
    return absl::InvalidArgumentError("adaptation steps must be >= 0 (got " +
                                      std::to_string(steps) + ")");
  }
  return CatchTorch("adaptation", [&] {
    const TensorList model_params(meta_params.begin(), meta_params.begin() + num_model_params_);
    return internal::AdaptWithoutGraph(
        *model_, loss_, MakeInnerRule(meta_params),
        internal::Replicate(model_params, tasks.size(), /*requires_grad=*/false), tasks.support_x,
        tasks.support_y, steps);
  });
}

internal::InnerRule MamlLearner::MakeInnerRule(const TensorList& meta_params) const {
  internal::InnerRule rule;
  rule.lr = options_.inner_lr;
  rule.adapt = adapt_;
  if (options_.learn_inner_lr) {
    // [1, ...]: broadcast over the task dimension.
    for (size_t i = num_model_params_; i < meta_params.size(); ++i) {
      rule.alphas.push_back(meta_params[i].detach().unsqueeze(0));
    }
  }
  return rule;
}

Adaptation MamlLearner::Adapt(const TensorList& meta_params, const TaskBatch& tasks,
                              int steps) const {
  const int64_t t = tasks.size();
  const TensorList model_params(meta_params.begin(), meta_params.begin() + num_model_params_);
  TensorList phi = internal::Replicate(model_params, t, /*requires_grad=*/false);
  Adaptation result;
  internal::QueryMetrics(*model_, loss_, phi, tasks.query_x, tasks.query_y, &result.loss_before,
                         &result.accuracy_before);
  phi = internal::AdaptWithoutGraph(*model_, loss_, MakeInnerRule(meta_params), std::move(phi),
                                    tasks.support_x, tasks.support_y, steps);
  internal::QueryMetrics(*model_, loss_, phi, tasks.query_x, tasks.query_y, &result.loss_after,
                         &result.accuracy_after);
  return result;
}

}  // namespace metatrain::meta
