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
  return CatchTorch("meta-gradient", [&] {
    return options_.recompute && options_.second_order ? ComputeRecomputed(meta_params, tasks)
                                                       : Compute(meta_params, tasks);
  });
}

MetaGradients MamlLearner::Compute(const TensorList& meta_params, const TaskBatch& tasks) const {
  at::AutoGradMode grad_mode(true);
  const int64_t t = tasks.size();
  const bool second_order = options_.second_order;
  const TensorList model_params(meta_params.begin(), meta_params.begin() + num_model_params_);
  // Leaves: the replicated meta-parameters (and Meta-SGD's rates); row t is task t's.
  TensorList phi0 = internal::Replicate(model_params, t, /*requires_grad=*/true);
  internal::InnerRule rule = TrainingRule(meta_params, t);

  TensorList phi = phi0;
  const std::vector<size_t> index = internal::AdaptedIndices(adapt_);
  for (int step = 0; step < options_.inner_steps; ++step) {
    at::Tensor total =
        internal::PerTaskLoss(loss_, model_->Forward(phi, tasks.support_x), tasks.support_y).sum();
    auto grads = torch::autograd::grad({total}, internal::Pick(phi, index), {},
                                       /*retain_graph=*/second_order,
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

// NOTE [Recomputed inner steps]
// Compute() keeps every inner step's graph (the forward's saved activations and the graph
// of its gradient) alive until the outer backward, so a task's memory grows with the
// number of inner steps. Here the inner loop runs without a graph and keeps only each
// step's parameters phi_s; the outer backward then walks the steps in reverse, rebuilding
// step s's graph from phi_s and backpropagating the adjoint of phi_{s+1} through it. That
// yields the adjoint of phi_s and step s's share of Meta-SGD's rate gradient. One step's
// graph is alive at a time, for one more graph-free forward and backward per step. It
// pays where a step's activations outweigh its parameters (conv nets, many examples);
// every step's parameters are kept either way.
// Bits: autograd's engine finishes everything downstream of phi_{s+1} before it enters
// step s, and runs a step's nodes in creation order, so each step's backward is the same
// computation in both forms. A leaf that every step uses (ANIL's unadapted body,
// Meta-SGD's rates) gathers one contribution per step, added in the same order here
// (query, then steps S-1 ... 0) as in the stored graph's buffer. Both hold because each of
// our models' parameters feeds one node per forward; recompute_test checks the bits
// for every second-order algorithm and model. A model whose parameter fed two nodes
// in a step would group those sums differently, which is why the setting is part of the
// job (inner.recompute) rather than a worker's choice.
MetaGradients MamlLearner::ComputeRecomputed(const TensorList& meta_params,
                                             const TaskBatch& tasks) const {
  at::AutoGradMode grad_mode(true);
  const int64_t t = tasks.size();
  const size_t num_model = num_model_params_;
  const TensorList model_params(meta_params.begin(), meta_params.begin() + num_model);
  internal::InnerRule rule = TrainingRule(meta_params, t);

  // phi_0 ... phi_S, detached.
  std::vector<TensorList> phis;
  phis.reserve(options_.inner_steps + 1);
  phis.push_back(internal::Replicate(model_params, t, /*requires_grad=*/false));
  for (int step = 0; step < options_.inner_steps; ++step) {
    phis.push_back(internal::AdaptWithoutGraph(*model_, loss_, rule, phis.back(), tasks.support_x,
                                               tasks.support_y, /*steps=*/1));
  }

  auto leaves = [](const TensorList& params) {
    TensorList out;
    out.reserve(params.size());
    for (const at::Tensor& p : params) out.push_back(p.detach().requires_grad_(true));
    return out;
  };
  MetaGradients result;
  TensorList adjoint;  // d(query loss) / d(phi_s), per model parameter
  {
    const TensorList phi = leaves(phis.back());
    phis.pop_back();
    at::Tensor query_out = model_->Forward(phi, tasks.query_x);
    at::Tensor query_loss = internal::PerTaskLoss(loss_, query_out, tasks.query_y);
    auto grads = torch::autograd::grad({query_loss.sum()}, phi, {}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t i = 0; i < num_model; ++i) {
      adjoint.push_back(grads[i].defined() ? grads[i].detach() : at::zeros_like(phi[i]).detach());
    }
    result.query_loss = query_loss.detach();
    if (loss_ == LossKind::kCrossEntropy) {
      result.query_accuracy = internal::PerTaskAccuracy(query_out.detach(), tasks.query_y);
    }
  }

  TensorList rate_grads(rule.alphas.size());
  const std::vector<size_t> index = internal::AdaptedIndices(adapt_);
  for (int step = options_.inner_steps - 1; step >= 0; --step) {
    const TensorList phi = leaves(phis[step]);
    phis.pop_back();  // phis[step] itself: only the leaves above use it now
    at::Tensor total =
        internal::PerTaskLoss(loss_, model_->Forward(phi, tasks.support_x), tasks.support_y).sum();
    auto grads = torch::autograd::grad({total}, internal::Pick(phi, index), {},
                                       /*retain_graph=*/true, /*create_graph=*/true);
    std::vector<at::Tensor> next, next_adjoint;
    for (size_t k = 0; k < index.size(); ++k) {
      next.push_back(internal::InnerUpdate(rule, index[k], phi[index[k]], grads[k]));
      next_adjoint.push_back(adjoint[index[k]]);
    }
    TensorList wrt = phi;
    wrt.insert(wrt.end(), rule.alphas.begin(), rule.alphas.end());
    auto back = torch::autograd::grad(next, wrt, next_adjoint, /*retain_graph=*/false,
                                      /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t i = 0; i < num_model; ++i) {
      if (adapt_[i]) {
        // phi_{s+1} = phi_s - step: the identity's share is inside `back`.
        adjoint[i] = back[i].defined() ? back[i].detach() : at::zeros_like(adjoint[i]);
      } else if (back[i].defined()) {
        // Unadapted (ANIL's body): phi_{s+1} is phi_s itself, so the adjoint carries on.
        adjoint[i] = adjoint[i] + back[i].detach();
      }
    }
    for (size_t j = 0; j < rate_grads.size(); ++j) {
      const at::Tensor& g = back[num_model + j];
      if (!g.defined()) continue;
      rate_grads[j] = rate_grads[j].defined() ? rate_grads[j] + g.detach() : g.detach();
    }
  }

  result.per_task = std::move(adjoint);
  for (size_t j = 0; j < rate_grads.size(); ++j) {
    result.per_task.push_back(rate_grads[j].defined() ? rate_grads[j]
                                                      : at::zeros_like(rule.alphas[j]).detach());
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

internal::InnerRule MamlLearner::TrainingRule(const TensorList& meta_params,
                                              int64_t num_tasks) const {
  internal::InnerRule rule;
  rule.lr = options_.inner_lr;
  rule.adapt = adapt_;
  if (options_.learn_inner_lr) {
    // Leaves, one row per task, so each task's meta-gradient includes its rates'.
    const TensorList rates(meta_params.begin() + num_model_params_, meta_params.end());
    rule.alphas = internal::Replicate(rates, num_tasks, /*requires_grad=*/true);
  }
  return rule;
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
