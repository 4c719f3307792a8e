#ifndef METATRAIN_COMMON_META_META_LSTM_LEARNER_H_
#define METATRAIN_COMMON_META_META_LSTM_LEARNER_H_

// The Meta-LSTM meta-learner (Ravi & Larochelle, "Optimization as a Model for Few-Shot
// Learning", ICLR 2017), algorithm "meta_lstm": an LSTM replaces gradient descent in the
// inner loop. The learner's parameters are the cell state of a coordinate-wise LSTM,
//
//   theta_t = sigmoid(f_t) * theta_{t-1} - sigmoid(i_t) * grad_t
//
// with the input gate a learned per-coordinate step size and the forget gate a learned
// decay. The equations, the inputs and the initialisation as implemented (following the
// reference code twitter-research/meta-learning-lstm where it is more precise than the
// paper) are in docs/core-models.md, "Meta-LSTM".
//
// Meta-parameters: the model's parameters (the LSTM's initial cell state theta_0, named as
// the model's), then the meta-learner's, shared by every coordinate so the meta-learner
// fits a learner of any size:
//   metalstm.lstm.weight_ih [4H, 4], weight_hh [4H, H], bias_ih [4H], bias_hh [4H]
//       (the first layer, laid out as torch.nn.LSTMCell(4, H));
//   metalstm.cell.WF [H + 2, 1], WI [H + 2, 1], bF [1, 1], bI [1, 1]
//       (the meta-learner cell, named as the reference code's).
//
// Meta-training backpropagates through the unrolled updates with the paper's
// simplification: the learner's loss and gradient that feed the meta-learner are
// constants (no second-order term). The meta-gradient is exact for that computation; see
// tests/common/meta/meta_lstm_learner_test.cc for the finite-difference reference.
//
// All tasks run batched and task t's bits do not depend on the batch (NOTE [Task
// independence is bitwise] in batched_ops.h): the shared weights are replicated per task,
// every product is a per-task bmm, and the transcendental functions (sigmoid, tanh, log)
// run through scalar loops, since ATen's vectorised and scalar-tail code paths round them
// differently and which elements land in the tail depends on the batch and thread count.
//
// Cost: the meta-learner keeps ~14H + 20 values per learner coordinate, per task and per
// unrolled step, for the backward pass; choose the learner size and meta_batch_size with
// that in mind (docs/core-models.md).
//
// Thread-safe: all methods are const and keep no state between calls.

#include <memory>
#include <vector>

#include "common/meta/learner.h"

namespace metatrain::meta {

namespace internal {

// The preprocessing of Andrychowicz et al. (2016), elementwise: x [...] -> [..., 2],
//   (log|x| / p, sign x)  if |x| >= e^-p,
//   (-1, e^p x)           otherwise.
// Computed in double per element and rounded to x's dtype. No gradient (its inputs are
// constants of the meta-gradient).
at::Tensor PreprocessMetaLstmInput(const at::Tensor& x, double p);

// sigmoid and tanh whose bits do not depend on the element's position or the thread count
// (one scalar code path); differentiable once.
at::Tensor PositionIndependentSigmoid(const at::Tensor& x);
at::Tensor PositionIndependentTanh(const at::Tensor& x);

// The meta-learner's weights, replicated per task ([T, spec...] each).
struct MetaLstmWeights {
  at::Tensor weight_ih, weight_hh, bias_ih, bias_hh;
  at::Tensor wf, wi, bf, bi;
};

// Recurrent state carried across updates; all undefined before the first (zeros).
struct MetaLstmState {
  at::Tensor h, c;          // first layer, [T, n, H]
  at::Tensor f_pre, i_pre;  // meta-learner gate pre-activations, [T, n, 1]
};

// One update of the learner: theta [T, n] (the cell state), grad [T, n] and loss [T] (the
// learner's mean support loss and its gradient at theta, used as given: pass detached
// tensors). Returns the next theta [T, n] and advances `state`.
at::Tensor MetaLstmStep(const MetaLstmWeights& weights, double preprocess_p,
                        const at::Tensor& theta, const at::Tensor& grad, const at::Tensor& loss,
                        MetaLstmState* state);

}  // namespace internal

class MetaLstmLearner : public MetaLearner {
 public:
  struct Options {
    int inner_steps = 5;
    int hidden_size = 20;
    double preprocess_p = 10;
    double forget_bias_init = 4.5;
    double input_bias_init = -4.5;
  };

  MetaLstmLearner(std::shared_ptr<const Model> model, LossKind loss, Options options);

  const std::vector<ParamSpec>& meta_param_specs() const override { return specs_; }
  // The model's PyTorch-default initialisation (the same draws as MAML's), then every
  // meta-learner weight U(-0.01, 0.01) as in the reference code, then bF and bI set to
  // forget_bias_init and input_bias_init (the middles of the reference's random ranges).
  TensorList InitialMetaParams(Rng& rng, at::ScalarType dtype) const override;
  absl::StatusOr<MetaGradients> ComputeMetaGradients(const TensorList& meta_params,
                                                     const TaskBatch& tasks) const override;
  absl::StatusOr<Adaptation> Evaluate(const TensorList& meta_params, const TaskBatch& tasks,
                                      int steps) const override;

  // The learner's parameters after `steps` meta-learner updates on each task's support
  // set, [T, ...] per model parameter, detached. Same validation as Evaluate.
  absl::StatusOr<TensorList> AdaptedParams(const TensorList& meta_params, const TaskBatch& tasks,
                                           int steps) const;

 private:
  // Runs `steps` updates from the replicated meta-parameters `rep` ([T, ...] each) and
  // returns the learner's parameters, keeping the graph to `rep` when grad mode is on.
  TensorList Unroll(const TensorList& rep, const TaskBatch& tasks, int steps) const;
  absl::Status Validate(const TensorList& meta_params, const TaskBatch& tasks) const;

  std::shared_ptr<const Model> model_;
  LossKind loss_;
  Options options_;
  size_t num_model_params_;
  std::vector<ParamSpec> specs_;
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_META_LSTM_LEARNER_H_
