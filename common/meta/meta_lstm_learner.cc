#include "common/meta/meta_lstm_learner.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <string>
#include <utility>

#include "common/meta/batched_ops.h"
#include "common/meta/inner_loop.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace internal {
namespace {

// Grain of the parallel loops below. Any split gives the same bits: each element is
// computed alone by the same scalar code.
constexpr int64_t kGrain = 1 << 14;

// out[k] = f(in[k]) for a contiguous copy of x.
template <typename Fn>
at::Tensor MapElementwise(const at::Tensor& x, Fn fn) {
  at::Tensor in = x.contiguous();
  at::Tensor out = at::empty_like(in);
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "MapElementwise", [&] {
    const scalar_t* src = in.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, in.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) dst[k] = fn(src[k]);
    });
  });
  return out;
}

// The derivatives are products and differences only, which round the same in every code
// path, so ATen computes them.
class SigmoidFunction : public torch::autograd::Function<SigmoidFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    at::Tensor y = MapElementwise(x, [](auto v) {
      using T = decltype(v);
      return static_cast<T>(T(1) / (T(1) + std::exp(-v)));
    });
    ctx->save_for_backward({y});
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const at::Tensor y = ctx->get_saved_variables()[0];
    return {grad[0] * (y * (1 - y))};
  }
};

class TanhFunction : public torch::autograd::Function<TanhFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    at::Tensor y = MapElementwise(x, [](auto v) { return std::tanh(v); });
    ctx->save_for_backward({y});
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const at::Tensor y = ctx->get_saved_variables()[0];
    return {grad[0] * (1 - y * y)};
  }
};

}  // namespace

at::Tensor PreprocessMetaLstmInput(const at::Tensor& x, double p) {
  at::Tensor in = x.detach().contiguous();
  std::vector<int64_t> shape(in.sizes().begin(), in.sizes().end());
  shape.push_back(2);
  at::Tensor out = at::empty(shape, in.options());
  const double threshold = std::exp(-p), scale = std::exp(p);
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "PreprocessMetaLstmInput", [&] {
    const scalar_t* src = in.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, in.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const double v = static_cast<double>(src[k]);
        const double magnitude = std::fabs(v);
        double first, second;
        if (magnitude >= threshold) {
          first = std::log(magnitude) / p;
          second = v > 0 ? 1.0 : -1.0;
        } else {
          first = -1.0;
          second = scale * v;
        }
        dst[2 * k] = static_cast<scalar_t>(first);
        dst[2 * k + 1] = static_cast<scalar_t>(second);
      }
    });
  });
  return out;
}

at::Tensor PositionIndependentSigmoid(const at::Tensor& x) { return SigmoidFunction::apply(x); }

at::Tensor PositionIndependentTanh(const at::Tensor& x) { return TanhFunction::apply(x); }

at::Tensor MetaLstmStep(const MetaLstmWeights& w, double preprocess_p, const at::Tensor& theta,
                        const at::Tensor& grad, const at::Tensor& loss, MetaLstmState* state) {
  const int64_t t = theta.size(0), n = theta.size(1);
  const int64_t hidden = w.weight_hh.size(2);
  if (!state->h.defined()) {
    state->h = at::zeros({t, n, hidden}, theta.options());
    state->c = at::zeros({t, n, hidden}, theta.options());
    state->f_pre = at::zeros({t, n, 1}, theta.options());
    state->i_pre = at::zeros({t, n, 1}, theta.options());
  }
  // First layer: a standard LSTM cell over [loss (2), grad (2)] and its own hidden state.
  const at::Tensor loss_in =
      PreprocessMetaLstmInput(loss, preprocess_p).unsqueeze(1).expand({t, n, 2});
  const at::Tensor grad_in = PreprocessMetaLstmInput(grad, preprocess_p);
  const at::Tensor x = at::cat({loss_in, grad_in, state->h}, 2);
  const at::Tensor gates =
      BatchedLinear(x, at::cat({w.weight_ih, w.weight_hh}, 2), w.bias_ih + w.bias_hh);
  // torch.nn.LSTMCell's gate order: input, forget, cell, output.
  const std::vector<at::Tensor> g = gates.chunk(4, 2);
  at::Tensor c = PositionIndependentSigmoid(g[1]) * state->c +
                 PositionIndependentSigmoid(g[0]) * PositionIndependentTanh(g[2]);
  at::Tensor h = PositionIndependentSigmoid(g[3]) * PositionIndependentTanh(c);

  // Meta-learner cell: the gates see [h, theta_{t-1}, own previous pre-activation] (the
  // reference code carries the pre-activation, where the paper writes the gate value).
  const at::Tensor theta3 = theta.unsqueeze(2);
  at::Tensor f_pre = BatchedLinear(at::cat({h, theta3, state->f_pre}, 2), w.wf.transpose(1, 2),
                                   w.bf.reshape({t, 1}));
  at::Tensor i_pre = BatchedLinear(at::cat({h, theta3, state->i_pre}, 2), w.wi.transpose(1, 2),
                                   w.bi.reshape({t, 1}));
  at::Tensor next = PositionIndependentSigmoid(f_pre) * theta3 -
                    PositionIndependentSigmoid(i_pre) * grad.unsqueeze(2);
  state->h = std::move(h);
  state->c = std::move(c);
  state->f_pre = std::move(f_pre);
  state->i_pre = std::move(i_pre);
  return next.squeeze(2);
}

}  // namespace internal

namespace {

constexpr int kNumLstmParams = 8;
constexpr double kLstmInitBound = 0.01;

// [T, n]: each task's parameters, flattened in spec order.
at::Tensor Flatten(const TensorList& params, int64_t t) {
  TensorList flat;
  flat.reserve(params.size());
  for (const at::Tensor& p : params) flat.push_back(p.reshape({t, -1}));
  return at::cat(flat, 1);
}

TensorList Unflatten(const at::Tensor& theta, const std::vector<ParamSpec>& specs, size_t count) {
  const int64_t t = theta.size(0);
  TensorList out;
  int64_t offset = 0;
  for (size_t i = 0; i < count; ++i) {
    const int64_t numel = NumElements(specs[i]);
    std::vector<int64_t> shape = {t};
    shape.insert(shape.end(), specs[i].shape.begin(), specs[i].shape.end());
    out.push_back(theta.narrow(1, offset, numel).reshape(shape));
    offset += numel;
  }
  return out;
}

}  // namespace

MetaLstmLearner::MetaLstmLearner(std::shared_ptr<const Model> model, LossKind loss, Options options)
    : model_(std::move(model)), loss_(loss), options_(options) {
  specs_ = model_->param_specs();
  num_model_params_ = specs_.size();
  const int64_t h = options_.hidden_size;
  specs_.push_back({"metalstm.lstm.weight_ih", {4 * h, 4}});
  specs_.push_back({"metalstm.lstm.weight_hh", {4 * h, h}});
  specs_.push_back({"metalstm.lstm.bias_ih", {4 * h}});
  specs_.push_back({"metalstm.lstm.bias_hh", {4 * h}});
  specs_.push_back({"metalstm.cell.WF", {h + 2, 1}});
  specs_.push_back({"metalstm.cell.WI", {h + 2, 1}});
  specs_.push_back({"metalstm.cell.bF", {1, 1}});
  specs_.push_back({"metalstm.cell.bI", {1, 1}});
}

TensorList MetaLstmLearner::InitialMetaParams(Rng& rng, at::ScalarType dtype) const {
  TensorList params = model_->Initialize(rng, dtype);
  for (size_t i = num_model_params_; i + 2 < specs_.size(); ++i) {
    params.push_back(internal::UniformTensor(rng, specs_[i].shape, kLstmInitBound, dtype));
  }
  const auto options = at::TensorOptions().dtype(dtype);
  params.push_back(at::full({1, 1}, options_.forget_bias_init, options));
  params.push_back(at::full({1, 1}, options_.input_bias_init, options));
  return params;
}

absl::Status MetaLstmLearner::Validate(const TensorList& meta_params,
                                       const TaskBatch& tasks) const {
  RETURN_IF_ERROR(internal::ValidateMetaParams(specs_, meta_params));
  return internal::ValidateTaskBatch(*model_, loss_, tasks, meta_params[0].scalar_type());
}

TensorList MetaLstmLearner::Unroll(const TensorList& rep, const TaskBatch& tasks, int steps) const {
  const int64_t t = tasks.size();
  const size_t m = num_model_params_;
  internal::MetaLstmWeights w{rep[m],     rep[m + 1], rep[m + 2], rep[m + 3],
                              rep[m + 4], rep[m + 5], rep[m + 6], rep[m + 7]};
  internal::MetaLstmState state;
  at::Tensor theta = Flatten(TensorList(rep.begin(), rep.begin() + m), t);
  for (int s = 0; s < steps; ++s) {
    // The learner's loss and gradient at the current parameters, as constants: the
    // paper's simplification (no second-order term through the meta-learner's inputs).
    at::Tensor grad, loss;
    {
      at::AutoGradMode grad_mode(true);
      TensorList phi = Unflatten(theta.detach(), specs_, m);
      for (auto& p : phi) p = p.detach().requires_grad_(true);
      at::Tensor per_task =
          internal::PerTaskLoss(loss_, model_->Forward(phi, tasks.support_x), tasks.support_y);
      auto grads = torch::autograd::grad({per_task.sum()}, phi);
      grad = Flatten(grads, t).detach();
      loss = per_task.detach();
    }
    theta = internal::MetaLstmStep(w, options_.preprocess_p, theta, grad, loss, &state);
  }
  return Unflatten(theta, specs_, m);
}

absl::StatusOr<MetaGradients> MetaLstmLearner::ComputeMetaGradients(const TensorList& meta_params,
                                                                    const TaskBatch& tasks) const {
  RETURN_IF_ERROR(Validate(meta_params, tasks));
  return CatchTorch("meta-gradient", [&] {
    at::AutoGradMode grad_mode(true);
    const TensorList rep = internal::Replicate(meta_params, tasks.size(), /*requires_grad=*/true);
    const TensorList phi = Unroll(rep, tasks, options_.inner_steps);
    const at::Tensor query_out = model_->Forward(phi, tasks.query_x);
    const at::Tensor query_loss = internal::PerTaskLoss(loss_, query_out, tasks.query_y);
    // Row t of each gradient is task t's: task t's loss depends on row t only.
    auto grads = torch::autograd::grad({query_loss.sum()}, rep, {}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    MetaGradients result;
    for (size_t i = 0; i < grads.size(); ++i) {
      result.per_task.push_back(grads[i].defined() ? grads[i].detach()
                                                   : at::zeros_like(rep[i]).detach());
    }
    result.query_loss = query_loss.detach();
    if (loss_ == LossKind::kCrossEntropy) {
      result.query_accuracy = internal::PerTaskAccuracy(query_out.detach(), tasks.query_y);
    }
    return result;
  });
}

absl::StatusOr<Adaptation> MetaLstmLearner::Evaluate(const TensorList& meta_params,
                                                     const TaskBatch& tasks, int steps) const {
  RETURN_IF_ERROR(Validate(meta_params, tasks));
  if (steps < 0) {
    return absl::InvalidArgumentError("evaluation steps must be >= 0 (got " +
                                      std::to_string(steps) + ")");
  }
  return CatchTorch("evaluation", [&] {
    at::NoGradGuard no_grad;
    const TensorList rep = internal::Replicate(meta_params, tasks.size(), /*requires_grad=*/false);
    const TensorList initial(rep.begin(), rep.begin() + num_model_params_);
    Adaptation result;
    internal::QueryMetrics(*model_, loss_, initial, tasks.query_x, tasks.query_y,
                           &result.loss_before, &result.accuracy_before);
    const TensorList phi = Unroll(rep, tasks, steps);
    internal::QueryMetrics(*model_, loss_, phi, tasks.query_x, tasks.query_y, &result.loss_after,
                           &result.accuracy_after);
    return result;
  });
}

absl::StatusOr<TensorList> MetaLstmLearner::AdaptedParams(const TensorList& meta_params,
                                                          const TaskBatch& tasks, int steps) const {
  RETURN_IF_ERROR(Validate(meta_params, tasks));
  if (steps < 0) {
    return absl::InvalidArgumentError("adaptation steps must be >= 0 (got " +
                                      std::to_string(steps) + ")");
  }
  return CatchTorch("adaptation", [&] {
    at::NoGradGuard no_grad;
    TensorList phi = Unroll(internal::Replicate(meta_params, tasks.size(), /*requires_grad=*/false),
                            tasks, steps);
    for (auto& p : phi) p = p.detach();
    return phi;
  });
}

}  // namespace metatrain::meta
