#ifndef METATRAIN_COMMON_META_MAML_LEARNER_H_
#define METATRAIN_COMMON_META_MAML_LEARNER_H_

// MAML (Finn et al. 2017) and the algorithms that share its inner loop:
//  - "maml": second-order; the meta-gradient differentiates through the inner updates.
//  - "fomaml": first-order; the meta-gradient is the query-loss gradient at the adapted
//    parameters.
//  - "meta_sgd" (Li et al. 2017): second-order, with a learned per-element inner
//    learning rate ("lr.<param>", initialised to inner.lr) that is meta-learned too.
//  - "anil" (Raghu et al. 2020): second-order, the inner loop adapts the head only
//    (ParamSpec::head); the body is meta-learned through the outer loop.
//
// All tasks of a batch run as one computation: the meta-parameters are replicated to
// [T, ...] leaves phi0, the inner loop minimises the sum over tasks of each task's mean
// support loss (task t's loss depends only on phi[t], so the gradient of the sum is each
// task's own gradient), and the gradient of the summed query loss with respect to phi0
// is, row by row, each task's meta-gradient. See NOTE [Task independence is bitwise] in
// batched_ops.h.
//
// Thread-safe: all methods are const and keep no state between calls.

#include <memory>
#include <vector>

#include "common/meta/inner_loop.h"
#include "common/meta/learner.h"

namespace metatrain::meta {

class MamlLearner : public MetaLearner {
 public:
  struct Options {
    int inner_steps = 1;
    double inner_lr = 0.01;
    bool second_order = true;
    bool learn_inner_lr = false;  // Meta-SGD
    bool head_only = false;       // ANIL
    // Second order only: rebuild each inner step's graph during the outer backward
    // instead of keeping every step's (NOTE [Recomputed inner steps], maml_learner.cc).
    bool recompute = false;
  };

  MamlLearner(std::shared_ptr<const Model> model, LossKind loss, Options options);

  const std::vector<ParamSpec>& meta_param_specs() const override { return specs_; }
  TensorList InitialMetaParams(Rng& rng, at::ScalarType dtype) const override;
  absl::StatusOr<MetaGradients> ComputeMetaGradients(const TensorList& meta_params,
                                                     const TaskBatch& tasks) const override;
  absl::StatusOr<Adaptation> Evaluate(const TensorList& meta_params, const TaskBatch& tasks,
                                      int steps) const override;

  // The model parameters after `steps` inner steps on each task's support set, [T, ...]
  // per model parameter, detached (for fine-tuning and export, and to check what the
  // inner loop touches). Same validation as Evaluate.
  absl::StatusOr<TensorList> AdaptedParams(const TensorList& meta_params, const TaskBatch& tasks,
                                           int steps) const;

 private:
  // For evaluation and adaptation: Meta-SGD's rates detached, broadcast over tasks.
  internal::InnerRule MakeInnerRule(const TensorList& meta_params) const;
  // For meta-gradients: Meta-SGD's rates as per-task leaves [T, ...] that require grad.
  internal::InnerRule TrainingRule(const TensorList& meta_params, int64_t num_tasks) const;
  MetaGradients Compute(const TensorList& meta_params, const TaskBatch& tasks) const;
  MetaGradients ComputeRecomputed(const TensorList& meta_params, const TaskBatch& tasks) const;
  Adaptation Adapt(const TensorList& meta_params, const TaskBatch& tasks, int steps) const;

  std::shared_ptr<const Model> model_;
  LossKind loss_;
  Options options_;
  size_t num_model_params_;
  std::vector<ParamSpec> specs_;
  std::vector<bool> adapt_;  // per model parameter
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_MAML_LEARNER_H_
