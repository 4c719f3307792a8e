#ifndef METATRAIN_COMMON_META_LEARNER_H_
#define METATRAIN_COMMON_META_LEARNER_H_

// One interface for every meta-learning algorithm (MAML, first-order MAML, Reptile,
// Meta-SGD, ANIL, prototypical networks; algorithm_catalog.h lists them). A learner turns
// meta-parameters and a batch of tasks into one meta-gradient per task; aggregation across tasks
// and the outer optimizer live outside (aggregation.h, optimizer.h), so the single-process trainer
// and the distributed coordinator share them and produce bit-identical results.

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/model.h"
#include "common/meta/params.h"
#include "common/meta/task_family.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

struct MetaGradients {
  // One entry per meta-parameter, shape [T, spec.shape...]: task t's own meta-gradient
  // (for Reptile, theta - phi_t). Detached.
  TensorList per_task;
  // Per task, after adaptation, on the query set: loss [T], accuracy [T] (classification
  // only; undefined for regression).
  at::Tensor query_loss;
  at::Tensor query_accuracy;
};

struct Adaptation {
  // Per task, on the query set, before and after `steps` inner steps: [T] each.
  // Accuracies are undefined for regression.
  at::Tensor loss_before, loss_after;
  at::Tensor accuracy_before, accuracy_after;
};

class MetaLearner {
 public:
  virtual ~MetaLearner() = default;

  // The model's parameters, then whatever the algorithm adds (Meta-SGD: one learning
  // rate per parameter, named "lr.<param name>").
  virtual const std::vector<ParamSpec>& meta_param_specs() const = 0;

  // Initial meta-parameters: the model's PyTorch-default initialisation, plus the
  // algorithm's own (Meta-SGD rates start at inner.lr).
  virtual TensorList InitialMetaParams(Rng& rng, at::ScalarType dtype) const = 0;

  // Adapts to every task of `tasks` with the training inner loop and returns each task's
  // meta-gradient. Task t's result depends only on meta_params and task t, never on the
  // other tasks in the batch (so sharding tasks over workers changes nothing).
  virtual absl::StatusOr<MetaGradients> ComputeMetaGradients(const TensorList& meta_params,
                                                             const TaskBatch& tasks) const = 0;

  // Adapts with `steps` inner steps (the meta-test setting) and reports query metrics
  // before and after. No meta-gradient.
  virtual absl::StatusOr<Adaptation> Evaluate(const TensorList& meta_params, const TaskBatch& tasks,
                                              int steps) const = 0;
};

// Builds the learner named by spec.algorithm() over `model`. `spec` must be normalised.
absl::StatusOr<std::unique_ptr<MetaLearner>> MakeMetaLearner(const v1::JobSpec& spec,
                                                             std::shared_ptr<const Model> model,
                                                             LossKind loss);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_LEARNER_H_
