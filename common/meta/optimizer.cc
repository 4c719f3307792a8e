#include "common/meta/optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace metatrain::meta {
namespace {

absl::Status CheckStateTensor(const std::map<std::string, at::Tensor>& state,
                              const std::string& key, at::IntArrayRef shape) {
  auto it = state.find(key);
  if (it == state.end()) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer state: missing '", key, "'"));
  }
  if (it->second.sizes() != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "optimizer state: '", key, "' has shape [", absl::StrJoin(it->second.sizes(), ", "),
        "], expected [", absl::StrJoin(shape, ", "), "]"));
  }
  return absl::OkStatus();
}

// torch.optim.Adam (amsgrad=False, weight_decay=0), single-tensor path:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
class Adam : public OuterOptimizer {
 public:
  Adam(const v1::OptimizerSpec& spec, std::vector<ParamSpec> specs)
      : specs_(std::move(specs)),
        lr_(spec.lr()),
        beta1_(spec.beta1()),
        beta2_(spec.beta2()),
        eps_(spec.epsilon()) {}

  void Step(TensorList& params, const TensorList& grads) override {
    if (exp_avg_.empty()) {
      for (const auto& p : params) {
        exp_avg_.push_back(at::zeros_like(p));
        exp_avg_sq_.push_back(at::zeros_like(p));
      }
    }
    ++step_;
    const double bias1 = 1 - std::pow(beta1_, static_cast<double>(step_));
    const double bias2 = 1 - std::pow(beta2_, static_cast<double>(step_));
    const double step_size = lr_ / bias1;
    const double bias2_sqrt = std::sqrt(bias2);
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) {
      const at::Tensor& g = grads[i];
      if (StepRaw<float>(i, g, params[i], step_size, bias2_sqrt) ||
          StepRaw<double>(i, g, params[i], step_size, bias2_sqrt)) {
        continue;
      }
      exp_avg_[i].mul_(beta1_).add_(g, 1 - beta1_);
      exp_avg_sq_[i].mul_(beta2_).addcmul_(g, g.conj(), 1 - beta2_);
      at::Tensor denom = (exp_avg_sq_[i].sqrt() / bias2_sqrt).add_(eps_);
      params[i].addcdiv_(exp_avg_[i], denom, -step_size);
    }
  }
  double lr() const override { return lr_; }
  void set_lr(double lr) override { lr_ = lr; }

  // The same update in one pass over contiguous CPU tensors of one floating type, each
  // operation rounded on its own (-std=c++17 contracts nothing into FMAs): some nine ATen
  // calls per parameter less, which is a sixth of a sinusoid meta-step on the
  // coordinator. ATen's kernels fuse some of these into FMAs, so the last bits differ
  // from torch.optim.Adam's (by ~1e-16 relative in float64; OptimizerTest compares).
  template <typename Scalar>
  bool StepRaw(size_t i, const at::Tensor& g, at::Tensor& p, double step_size, double bias2_sqrt) {
    const at::ScalarType type = c10::CppTypeToScalarType<Scalar>::value;
    at::Tensor& m = exp_avg_[i];
    at::Tensor& v = exp_avg_sq_[i];
    auto usable = [&](const at::Tensor& t) {
      return t.scalar_type() == type && t.is_contiguous() && t.device().is_cpu() &&
             t.numel() == p.numel();
    };
    if (!usable(g) || !usable(p) || !usable(m) || !usable(v)) return false;
    const auto b1 = static_cast<Scalar>(beta1_), b2 = static_cast<Scalar>(beta2_);
    const auto one_minus_b1 = static_cast<Scalar>(1 - beta1_);
    const auto one_minus_b2 = static_cast<Scalar>(1 - beta2_);
    const auto eps = static_cast<Scalar>(eps_), size = static_cast<Scalar>(step_size);
    const auto correction = static_cast<Scalar>(bias2_sqrt);
    const Scalar* grad = g.data_ptr<Scalar>();
    Scalar* param = p.data_ptr<Scalar>();
    Scalar* mean = m.data_ptr<Scalar>();
    Scalar* square = v.data_ptr<Scalar>();
    for (int64_t e = 0, n = p.numel(); e < n; ++e) {
      mean[e] = b1 * mean[e] + one_minus_b1 * grad[e];
      square[e] = b2 * square[e] + one_minus_b2 * (grad[e] * grad[e]);
      const Scalar denom = std::sqrt(square[e]) / correction + eps;
      param[e] = param[e] - size * (mean[e] / denom);
    }
    p.unsafeGetTensorImpl()->bump_version();
    return true;
  }

  std::map<std::string, at::Tensor> State() const override {
    std::map<std::string, at::Tensor> state;
    state["adam.step"] = at::scalar_tensor(static_cast<double>(step_), at::kDouble);
    state["adam.lr"] = at::scalar_tensor(lr_, at::kDouble);
    for (size_t i = 0; i < exp_avg_.size(); ++i) {
      state["adam.exp_avg." + specs_[i].name] = exp_avg_[i];
      state["adam.exp_avg_sq." + specs_[i].name] = exp_avg_sq_[i];
    }
    return state;
  }

  absl::Status LoadState(const std::map<std::string, at::Tensor>& state) override {
    for (const char* key : {"adam.step", "adam.lr"}) {
      absl::Status s = CheckStateTensor(state, key, {});
      if (!s.ok()) return s;
    }
    const auto step = static_cast<int64_t>(state.at("adam.step").item<double>());
    std::vector<at::Tensor> m, v;
    if (step > 0) {
      for (const auto& spec : specs_) {
        for (const char* kind : {"adam.exp_avg.", "adam.exp_avg_sq."}) {
          absl::Status s = CheckStateTensor(state, kind + spec.name, spec.shape);
          if (!s.ok()) return s;
        }
        m.push_back(state.at("adam.exp_avg." + spec.name).clone());
        v.push_back(state.at("adam.exp_avg_sq." + spec.name).clone());
      }
    }
    step_ = step;
    lr_ = state.at("adam.lr").item<double>();
    exp_avg_ = std::move(m);
    exp_avg_sq_ = std::move(v);
    return absl::OkStatus();
  }

 private:
  std::vector<ParamSpec> specs_;
  double lr_, beta1_, beta2_, eps_;
  int64_t step_ = 0;
  TensorList exp_avg_, exp_avg_sq_;
};

// torch.optim.SGD (dampening 0, nesterov False): buf = g on the first step, then
// buf = momentum buf + g; p -= lr buf.
class Sgd : public OuterOptimizer {
 public:
  Sgd(const v1::OptimizerSpec& spec, std::vector<ParamSpec> specs)
      : specs_(std::move(specs)), lr_(spec.lr()), momentum_(spec.momentum()) {}

  void Step(TensorList& params, const TensorList& grads) override {
    at::NoGradGuard no_grad;
    if (momentum_ == 0) {
      for (size_t i = 0; i < params.size(); ++i) params[i].add_(grads[i], -lr_);
      return;
    }
    const bool first = buf_.empty();
    for (size_t i = 0; i < params.size(); ++i) {
      if (first) {
        buf_.push_back(grads[i].clone());
      } else {
        buf_[i].mul_(momentum_).add_(grads[i]);
      }
      params[i].add_(buf_[i], -lr_);
    }
  }
  double lr() const override { return lr_; }
  void set_lr(double lr) override { lr_ = lr; }

  std::map<std::string, at::Tensor> State() const override {
    std::map<std::string, at::Tensor> state;
    state["sgd.lr"] = at::scalar_tensor(lr_, at::kDouble);
    for (size_t i = 0; i < buf_.size(); ++i) {
      state["sgd.momentum_buffer." + specs_[i].name] = buf_[i];
    }
    return state;
  }

  absl::Status LoadState(const std::map<std::string, at::Tensor>& state) override {
    absl::Status s = CheckStateTensor(state, "sgd.lr", {});
    if (!s.ok()) return s;
    std::vector<at::Tensor> buf;
    if (momentum_ != 0 && !specs_.empty() && state.count("sgd.momentum_buffer." + specs_[0].name)) {
      for (const auto& spec : specs_) {
        s = CheckStateTensor(state, "sgd.momentum_buffer." + spec.name, spec.shape);
        if (!s.ok()) return s;
        buf.push_back(state.at("sgd.momentum_buffer." + spec.name).clone());
      }
    }
    lr_ = state.at("sgd.lr").item<double>();
    buf_ = std::move(buf);
    return absl::OkStatus();
  }

 private:
  std::vector<ParamSpec> specs_;
  double lr_, momentum_;
  TensorList buf_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<OuterOptimizer>> MakeOuterOptimizer(
    const v1::OptimizerSpec& spec, const std::vector<ParamSpec>& specs) {
  if (!(spec.lr() > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("outer.lr must be > 0 (got ", spec.lr(), ")"));
  }
  if (spec.kind() == "adam") return std::unique_ptr<OuterOptimizer>(new Adam(spec, specs));
  if (spec.kind() == "sgd") return std::unique_ptr<OuterOptimizer>(new Sgd(spec, specs));
  return absl::InvalidArgumentError(
      absl::StrCat("outer.kind: unknown '", spec.kind(), "' (expected one of adam, sgd)"));
}

double ClipGradNorm(TensorList& grads, double max_norm) {
  if (grads.empty()) return 0;
  // As clip_grad_norm_: total = ||(||g_i||_2)_i||_2, coef = max_norm / (total + 1e-6),
  // applied only when coef < 1.
  std::vector<at::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(at::linalg_vector_norm(g, 2));
  const at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);
  const double total_norm = total.item<double>();
  if (max_norm > 0) {
    const at::Tensor coef = max_norm / (total + 1e-6);
    if (coef.item<double>() < 1) {
      at::NoGradGuard no_grad;
      for (auto& g : grads) g.mul_(coef.to(g.scalar_type()));
    }
  }
  return total_norm;
}

PlateauSchedule::PlateauSchedule(double factor, int patience, double min_lr)
    : factor_(factor), min_lr_(min_lr), patience_(patience), best_(INFINITY) {}

double PlateauSchedule::Observe(double loss, double current_lr) {
  // mode "min", threshold_mode "rel", threshold 1e-4, cooldown 0, eps 1e-8.
  if (loss < best_ * (1 - 1e-4)) {
    best_ = loss;
    bad_epochs_ = 0;
  } else {
    ++bad_epochs_;
  }
  if (bad_epochs_ > patience_) {
    bad_epochs_ = 0;
    const double new_lr = std::max(current_lr * factor_, min_lr_);
    if (current_lr - new_lr > 1e-8) return new_lr;
  }
  return current_lr;
}

bool EarlyStopping::Observe(double loss) {
  if (loss < best_) {
    best_ = loss;
    since_best_ = 0;
    return true;
  }
  ++since_best_;
  return false;
}

}  // namespace metatrain::meta
