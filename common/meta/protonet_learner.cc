#include "common/meta/protonet_learner.h"

#include <torch/csrc/autograd/autograd.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/inner_loop.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace {

// Task `t` of `tasks` as a batch of one (views, no copy).
TaskBatch OneTask(const TaskBatch& tasks, int64_t t) {
  return TaskBatch{tasks.support_x.narrow(0, t, 1), tasks.support_y.narrow(0, t, 1),
                   tasks.query_x.narrow(0, t, 1), tasks.query_y.narrow(0, t, 1)};
}

}  // namespace

ProtoNetLearner::ProtoNetLearner(std::shared_ptr<const Model> model) : model_(std::move(model)) {
  for (const ParamSpec& spec : model_->param_specs()) {
    if (!spec.head) specs_.push_back(spec);
  }
}

TensorList ProtoNetLearner::InitialMetaParams(Rng& rng, at::ScalarType dtype) const {
  TensorList all = model_->Initialize(rng, dtype);
  TensorList body;
  const auto& specs = model_->param_specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].head) body.push_back(std::move(all[i]));
  }
  return body;
}

absl::StatusOr<int64_t> ProtoNetLearner::Validate(const TensorList& meta_params,
                                                  const TaskBatch& tasks) const {
  RETURN_IF_ERROR(internal::ValidateMetaParams(specs_, meta_params));
  const at::ScalarType dtype = meta_params[0].scalar_type();
  // The label bound comes from the batch itself; a malformed support_y gets the shared
  // checks' message (with bound 1) before anything reads its values.
  int64_t ways = 1;
  const at::Tensor& sy = tasks.support_y;
  const bool labels_readable =
      sy.defined() && sy.scalar_type() == at::kLong && sy.dim() == 2 && sy.numel() > 0 &&
      tasks.support_x.defined() && tasks.support_x.dim() >= 2 &&
      sy.size(0) == tasks.support_x.size(0) && sy.size(1) == tasks.support_x.size(1);
  if (labels_readable) ways = std::max<int64_t>(1, sy.max().item<int64_t>() + 1);
  if (labels_readable && ways > sy.size(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("support_y: labels go up to ", ways - 1, " but a task has only ", sy.size(1),
                     " support examples; every class in [0, ", ways, ") needs at least one"));
  }
  RETURN_IF_ERROR(internal::ValidateTaskBatch(model_->input_shape(), ways, LossKind::kCrossEntropy,
                                              tasks, dtype));
  // Every task must hold every class in its support set: an empty class has no prototype.
  const at::Tensor counts = at::one_hot(sy, ways).sum(1);  // [T, W]
  if (counts.min().item<int64_t>() == 0) {
    const at::Tensor missing = counts.eq(0).nonzero();
    const int64_t t = missing[0][0].item<int64_t>(), k = missing[0][1].item<int64_t>();
    return absl::InvalidArgumentError(
        absl::StrCat("support_y: task ", t, " has no support example of class ", k,
                     " (protonet needs each of the batch's ", ways, " classes, 0..", ways - 1,
                     ", in every task's support set)"));
  }
  return ways;
}

std::vector<at::Tensor> ProtoNetLearner::Logits(const TensorList& params, const TaskBatch& tasks,
                                                int64_t ways) const {
  const int64_t s = tasks.support_x.size(1), q = tasks.query_x.size(1);
  // Support and query in one batch: one set of batch-norm statistics for both.
  const at::Tensor z = model_->Embed(params, at::cat({tasks.support_x, tasks.query_x}, 1));
  const std::vector<at::Tensor> support = z.narrow(1, 0, s).unbind(0);
  const std::vector<at::Tensor> query = z.narrow(1, s, q).unbind(0);
  const std::vector<at::Tensor> labels = tasks.support_y.unbind(0);
  std::vector<at::Tensor> logits;
  logits.reserve(support.size());
  for (size_t t = 0; t < support.size(); ++t) {
    const at::Tensor onehot = at::one_hot(labels[t], ways).to(z.scalar_type());  // [S, W]
    // Counts are small integers, exact in any float type; the sum is then a plain mean.
    const at::Tensor counts = onehot.sum(0).unsqueeze(1);                     // [W, 1]
    const at::Tensor prototypes = onehot.t().mm(support[t]) / counts;         // [W, D]
    const at::Tensor diff = query[t].unsqueeze(1) - prototypes.unsqueeze(0);  // [Q, W, D]
    logits.push_back(-(diff * diff).sum(2));                                  // [Q, W]
  }
  return logits;
}

absl::StatusOr<MetaGradients> ProtoNetLearner::ComputeMetaGradients(const TensorList& meta_params,
                                                                    const TaskBatch& tasks) const {
  ASSIGN_OR_RETURN(const int64_t ways, Validate(meta_params, tasks));
  return CatchTorch("meta-gradient", [&] {
    at::AutoGradMode grad_mode(true);
    const int64_t num_tasks = tasks.size();
    // One task at a time: task t's result is its computation alone by construction, and
    // memory holds one task's activations (a 60-way episode with 15 queries per class
    // embeds 960 images).
    std::vector<TensorList> per_task(meta_params.size());
    std::vector<at::Tensor> losses, accuracies;
    for (int64_t t = 0; t < num_tasks; ++t) {
      const TaskBatch task = OneTask(tasks, t);
      const TensorList phi = internal::Replicate(meta_params, 1, /*requires_grad=*/true);
      const at::Tensor logits = Logits(phi, task, ways)[0];
      const at::Tensor y = task.query_y[0];
      const at::Tensor loss = at::cross_entropy_loss(logits, y);
      auto grads = torch::autograd::grad({loss}, phi, {}, /*retain_graph=*/false,
                                         /*create_graph=*/false, /*allow_unused=*/true);
      for (size_t i = 0; i < grads.size(); ++i) {
        per_task[i].push_back(grads[i].defined() ? grads[i].detach()
                                                 : at::zeros_like(phi[i]).detach());
      }
      losses.push_back(loss.detach());
      accuracies.push_back(logits.detach().argmax(1).eq(y).to(logits.scalar_type()).mean());
    }
    MetaGradients result;
    for (TensorList& grads : per_task) result.per_task.push_back(at::cat(grads, 0));
    result.query_loss = at::stack(losses);
    result.query_accuracy = at::stack(accuracies);
    return result;
  });
}

absl::StatusOr<Adaptation> ProtoNetLearner::Evaluate(const TensorList& meta_params,
                                                     const TaskBatch& tasks, int steps) const {
  (void)steps;  // nothing to adapt: see the header
  ASSIGN_OR_RETURN(const int64_t ways, Validate(meta_params, tasks));
  return CatchTorch("evaluation", [&] {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> losses, accuracies;
    for (int64_t t = 0; t < tasks.size(); ++t) {
      const TaskBatch task = OneTask(tasks, t);
      const at::Tensor logits =
          Logits(internal::Replicate(meta_params, 1, /*requires_grad=*/false), task, ways)[0];
      const at::Tensor y = task.query_y[0];
      losses.push_back(at::cross_entropy_loss(logits, y));
      accuracies.push_back(logits.argmax(1).eq(y).to(logits.scalar_type()).mean());
    }
    Adaptation result;
    result.loss_before = result.loss_after = at::stack(losses);
    result.accuracy_before = result.accuracy_after = at::stack(accuracies);
    return result;
  });
}

absl::StatusOr<at::Tensor> ProtoNetLearner::QueryLogits(const TensorList& meta_params,
                                                        const TaskBatch& tasks) const {
  ASSIGN_OR_RETURN(const int64_t ways, Validate(meta_params, tasks));
  return CatchTorch("query logits", [&] {
    at::NoGradGuard no_grad;
    return at::stack(Logits(internal::Replicate(meta_params, tasks.size(), /*requires_grad=*/false),
                            tasks, ways));
  });
}

}  // namespace metatrain::meta
