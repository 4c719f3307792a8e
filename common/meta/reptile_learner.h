#ifndef METATRAIN_COMMON_META_REPTILE_LEARNER_H_
#define METATRAIN_COMMON_META_REPTILE_LEARNER_H_

// Reptile (Nichol et al. 2018): adapt to each task with `inner.steps` plain SGD steps
// (rate inner.lr) and report theta - phi_t as task t's "meta-gradient", so an outer SGD
// step with rate epsilon moves theta toward the adapted parameters (the outer rate and
// its linear annealing are the trainer's business).
//
// Training data of a task: support ∪ query. Reptile has no support/query split during
// meta-training (its inner minibatches come from the task's whole sample), so using the
// query examples as more training data is the faithful reading and wastes nothing. The
// inner steps are full-batch on that union. query_loss / query_accuracy in the result are
// therefore measured on examples the adaptation has seen (a training metric). Evaluate
// adapts on the support set only and measures the held-out query set, like every learner.
//
// All tasks run batched (see maml_learner.h); thread-safe (const, stateless).

#include <memory>
#include <vector>

#include "common/meta/learner.h"

namespace metatrain::meta {

class ReptileLearner : public MetaLearner {
 public:
  ReptileLearner(std::shared_ptr<const Model> model, LossKind loss, int inner_steps,
                 double inner_lr);

  const std::vector<ParamSpec>& meta_param_specs() const override { return model_->param_specs(); }
  TensorList InitialMetaParams(Rng& rng, at::ScalarType dtype) const override;
  absl::StatusOr<MetaGradients> ComputeMetaGradients(const TensorList& meta_params,
                                                     const TaskBatch& tasks) const override;
  absl::StatusOr<Adaptation> Evaluate(const TensorList& meta_params, const TaskBatch& tasks,
                                      int steps) const override;

 private:
  MetaGradients Compute(const TensorList& meta_params, const TaskBatch& tasks) const;

  std::shared_ptr<const Model> model_;
  LossKind loss_;
  int inner_steps_;
  double inner_lr_;
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_REPTILE_LEARNER_H_
