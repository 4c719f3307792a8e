#ifndef METATRAIN_COMMON_META_INNER_LOOP_H_
#define METATRAIN_COMMON_META_INNER_LOOP_H_

// Pieces shared by the learners (maml_learner.cc, reptile_learner.cc): input validation,
// per-task losses and accuracies, and the graph-free inner loop used for evaluation.
// Internal to the meta-learning core.

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/meta/model.h"
#include "common/meta/params.h"
#include "common/meta/task_family.h"

namespace metatrain::meta::internal {

// "[4, 10, 1]".
std::string ShapeString(at::IntArrayRef shape);

// meta_params must match `specs` in count and shape, all of one floating dtype.
// INVALID_ARGUMENT names the parameter.
absl::Status ValidateMetaParams(const std::vector<ParamSpec>& specs, const TensorList& params);

// Checks the batch against the model's input shape and output size and the loss kind:
// x [T, n, input...] of `dtype`; y [T, n, out] of `dtype` (MSE) or [T, n] int64 with
// labels in [0, out) (cross-entropy); T > 0, n > 0, support and query agree on T.
// INVALID_ARGUMENT names the tensor ("support_x: expected [T, n, 1], got [4, 10, 2]").
absl::Status ValidateTaskBatch(const Model& model, LossKind loss, const TaskBatch& tasks,
                               at::ScalarType dtype);
// The same checks against an input shape and an output size (the label bound for
// cross-entropy) instead of a model's.
absl::Status ValidateTaskBatch(const std::vector<int64_t>& input_shape, int64_t output_size,
                               LossKind loss, const TaskBatch& tasks, at::ScalarType dtype);

// Per-task mean loss, [T]: MSE over all outputs, or cross-entropy over examples.
// out [T, n, O]; y as in ValidateTaskBatch.
at::Tensor PerTaskLoss(LossKind loss, const at::Tensor& out, const at::Tensor& y);

// Per-task fraction of argmax(out) == y, [T], in out's dtype.
at::Tensor PerTaskAccuracy(const at::Tensor& out, const at::Tensor& y);

// params[i] [spec...] -> [T, spec...] copies, detached (requires_grad as asked).
TensorList Replicate(const TensorList& params, int64_t num_tasks, bool requires_grad);

// How the inner loop updates parameter i: phi_i -= lr * g_i, or alpha_i * g_i when
// `alphas` is non-empty (Meta-SGD; alphas[i] [T, ...] or broadcastable), only where
// adapt[i].
struct InnerRule {
  double lr = 0;
  TensorList alphas;
  std::vector<bool> adapt;
};

// The indices i with adapt[i]: the parameters the inner loop updates.
std::vector<size_t> AdaptedIndices(const std::vector<bool>& adapt);

// params[index[0]], params[index[1]], ...
std::vector<at::Tensor> Pick(const TensorList& params, const std::vector<size_t>& index);

// phi - step * g, written as two separately rounded ops (see NOTE [Task independence is
// bitwise] in batched_ops.h).
at::Tensor InnerUpdate(const InnerRule& rule, size_t i, const at::Tensor& phi, const at::Tensor& g);

// `steps` inner steps on (x, y) from phi ([T, ...], any graph state), keeping no graph:
// returns detached tensors. Runs its own autograd; callers need not enable grad mode.
TensorList AdaptWithoutGraph(const Model& model, LossKind loss, const InnerRule& rule,
                             TensorList phi, const at::Tensor& x, const at::Tensor& y, int steps);

// Query loss (and accuracy for classification) of phi on (x, y), without graph.
void QueryMetrics(const Model& model, LossKind loss, const TensorList& phi, const at::Tensor& x,
                  const at::Tensor& y, at::Tensor* loss_out, at::Tensor* accuracy_out);

}  // namespace metatrain::meta::internal

#endif  // METATRAIN_COMMON_META_INNER_LOOP_H_
