#ifndef METATRAIN_COMMON_META_PROTONET_LEARNER_H_
#define METATRAIN_COMMON_META_PROTONET_LEARNER_H_

// Prototypical networks (Snell, Swersky & Zemel 2017). The embedding is the model without
// its head (Model::Embed: the conv net's flattened 4-block features, 64 values for 28x28
// inputs with 64 filters; the MLP's last hidden layer). Per task:
//
//   z          = embed(support ∪ query)                 (one batch: see batch norm below)
//   c_k        = mean of z over the support examples of class k        (prototypes)
//   logits_qk  = -||z_q - c_k||^2                        (squared Euclidean distance)
//   loss       = mean over queries of cross-entropy(logits_q, y_q)
//
// and the task's meta-gradient is d loss / d embedding parameters. There is no inner loop.
//
// Meta-parameters: the embedding's parameters only, named and shaped like the model's
// (param_specs() without the head entries), so a checkpoint is the PyTorch module's
// state_dict minus head.* (load_state_dict(..., strict=False) leaves the head untouched).
//
// Classes per task: W = 1 + the largest support label in the batch; every task's support
// set must hold every class in [0, W) and its query labels must lie in [0, W), else
// INVALID_ARGUMENT. W is not tied to the model's output size (tasks.ways), so the same
// parameters train on protonet.train_ways-way episodes and evaluate on tasks.ways-way
// ones, or on episodes of any way (`metactl evaluate --episodes`).
//
// Batch norm (the conv net's, and the MLP's if model.batch_norm): batch statistics, as in
// the rest of metatrain, over one task's support and query examples together: one set of
// statistics normalises both, as Snell et al.'s reference code does in training, so
// support and query embeddings live in the same space. Evaluation is therefore
// transductive over a task's query set, like MAML's with batch statistics.
//
// Evaluate(steps) ignores `steps` (nothing to adapt) and reports the prototype
// classifier's query loss and accuracy as both "before" and "after".
//
// Task independence: everything after the embedding runs task by task on 2-D tensors,
// exactly the computation of a batch of one, so task t's bits do not depend on the other
// tasks (NOTE [Task independence is bitwise] in batched_ops.h; the embedding keeps it
// already).
//
// Thread-safe: all methods are const and keep no state between calls.

#include <memory>
#include <vector>

#include "common/meta/learner.h"

namespace metatrain::meta {

class ProtoNetLearner : public MetaLearner {
 public:
  // `model` must have at least one body parameter (MakeMetaLearner checks).
  explicit ProtoNetLearner(std::shared_ptr<const Model> model);

  const std::vector<ParamSpec>& meta_param_specs() const override { return specs_; }
  // The model's initialisation (from the same Rng draws, head included, so the body's
  // values equal a MAML job's with the same seed), without the head.
  TensorList InitialMetaParams(Rng& rng, at::ScalarType dtype) const override;
  absl::StatusOr<MetaGradients> ComputeMetaGradients(const TensorList& meta_params,
                                                     const TaskBatch& tasks) const override;
  absl::StatusOr<Adaptation> Evaluate(const TensorList& meta_params, const TaskBatch& tasks,
                                      int steps) const override;

  // Per task: logits [T, n_query, W] = -squared distances to the prototypes, with the
  // same validation as Evaluate. For tests and tools.
  absl::StatusOr<at::Tensor> QueryLogits(const TensorList& meta_params,
                                         const TaskBatch& tasks) const;

 private:
  // W for `tasks`, after checking shapes, dtypes and labels.
  absl::StatusOr<int64_t> Validate(const TensorList& meta_params, const TaskBatch& tasks) const;
  // Per-task logits [n_query, W] of each task, from params [T, ...] (graph kept).
  std::vector<at::Tensor> Logits(const TensorList& params, const TaskBatch& tasks,
                                 int64_t ways) const;

  std::shared_ptr<const Model> model_;
  std::vector<ParamSpec> specs_;
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_PROTONET_LEARNER_H_
