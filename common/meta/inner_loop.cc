#include "common/meta/inner_loop.h"

#include <torch/csrc/autograd/autograd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace metatrain::meta::internal {
namespace {

std::string ExpectedShape(const std::vector<int64_t>& tail, bool with_output, int64_t output_size) {
  std::vector<std::string> parts = {"T", "n"};
  for (int64_t d : tail) parts.push_back(absl::StrCat(d));
  if (with_output) parts.push_back(absl::StrCat(output_size));
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

absl::Status CheckX(const char* name, const at::Tensor& x, const std::vector<int64_t>& input,
                    at::ScalarType dtype) {
  if (!x.defined()) return absl::InvalidArgumentError(absl::StrCat(name, ": missing"));
  bool ok = x.dim() == static_cast<int64_t>(input.size()) + 2 && x.size(0) > 0 && x.size(1) > 0;
  for (size_t i = 0; ok && i < input.size(); ++i) ok = x.size(i + 2) == input[i];
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": expected ", ExpectedShape(input, false, 0), ", got ", ShapeString(x.sizes())));
  }
  if (x.scalar_type() != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": dtype ", c10::toString(x.scalar_type()),
                                                   " does not match the parameters' ",
                                                   c10::toString(dtype)));
  }
  return absl::OkStatus();
}

absl::Status CheckY(const char* name, const at::Tensor& y, const at::Tensor& x, LossKind loss,
                    int64_t output_size, at::ScalarType dtype) {
  if (!y.defined()) return absl::InvalidArgumentError(absl::StrCat(name, ": missing"));
  const bool regression = loss == LossKind::kMse;
  const int64_t want_dim = regression ? 3 : 2;
  if (y.dim() != want_dim || y.size(0) != x.size(0) || y.size(1) != x.size(1) ||
      (regression && y.size(2) != output_size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": expected ", regression ? ExpectedShape({}, true, output_size) : "[T, n]",
        " with T = ", x.size(0), ", n = ", x.size(1), ", got ", ShapeString(y.sizes())));
  }
  if (regression) {
    if (y.scalar_type() != dtype) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": dtype ", c10::toString(y.scalar_type()),
                       " does not match the parameters' ", c10::toString(dtype)));
    }
    return absl::OkStatus();
  }
  if (y.scalar_type() != at::kLong) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": labels must be int64 (got ", c10::toString(y.scalar_type()), ")"));
  }
  const int64_t low = y.min().item<int64_t>(), high = y.max().item<int64_t>();
  if (low < 0 || high >= output_size) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": labels must be in [0, ", output_size,
                                                   ") (got ", low < 0 ? low : high, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string ShapeString(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status ValidateMetaParams(const std::vector<ParamSpec>& specs, const TensorList& params) {
  if (params.size() != specs.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("meta_params: expected ", specs.size(), " tensors, got ", params.size()));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const at::Tensor& p = params[i];
    if (!p.defined() || p.sizes() != at::IntArrayRef(specs[i].shape)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "meta_params[", i, "] (", specs[i].name, "): expected ", ShapeString(specs[i].shape),
          ", got ", p.defined() ? ShapeString(p.sizes()) : "undefined"));
    }
    if (!at::isFloatingType(p.scalar_type()) || p.scalar_type() != params[0].scalar_type()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "meta_params[", i, "] (", specs[i].name, "): dtype ", c10::toString(p.scalar_type()),
          ", expected ", c10::toString(params[0].scalar_type()), " like the others"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTaskBatch(const Model& model, LossKind loss, const TaskBatch& tasks,
                               at::ScalarType dtype) {
  return ValidateTaskBatch(model.input_shape(), model.output_size(), loss, tasks, dtype);
}

absl::Status ValidateTaskBatch(const std::vector<int64_t>& input, int64_t out, LossKind loss,
                               const TaskBatch& tasks, at::ScalarType dtype) {
  absl::Status status = CheckX("support_x", tasks.support_x, input, dtype);
  if (status.ok()) status = CheckX("query_x", tasks.query_x, input, dtype);
  if (status.ok()) status = CheckY("support_y", tasks.support_y, tasks.support_x, loss, out, dtype);
  if (status.ok()) status = CheckY("query_y", tasks.query_y, tasks.query_x, loss, out, dtype);
  if (!status.ok()) return status;
  if (tasks.query_x.size(0) != tasks.support_x.size(0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "query_x: ", tasks.query_x.size(0), " tasks but support_x has ", tasks.support_x.size(0)));
  }
  return absl::OkStatus();
}

at::Tensor PerTaskLoss(LossKind loss, const at::Tensor& out, const at::Tensor& y) {
  if (loss == LossKind::kMse) {
    at::Tensor diff = out - y;
    return (diff * diff).mean({1, 2});
  }
  const int64_t t = out.size(0), n = out.size(1);
  at::Tensor per_example = at::cross_entropy_loss(
      out.reshape({t * n, out.size(2)}), y.reshape({t * n}), /*weight=*/{}, at::Reduction::None);
  return per_example.reshape({t, n}).mean(1);
}

at::Tensor PerTaskAccuracy(const at::Tensor& out, const at::Tensor& y) {
  return out.argmax(2).eq(y).to(out.scalar_type()).mean(1);
}

TensorList Replicate(const TensorList& params, int64_t num_tasks, bool requires_grad) {
  TensorList out;
  out.reserve(params.size());
  for (const at::Tensor& p : params) {
    std::vector<int64_t> shape = {num_tasks};
    shape.insert(shape.end(), p.sizes().begin(), p.sizes().end());
    // One copy from a broadcast view: the bits of at::repeat, which gets there through an
    // unfold per dimension and a few more operator calls (small, but sinusoid's steps are
    // made of such calls).
    at::Tensor copies = at::empty(shape, p.options());
    copies.copy_(p.detach().unsqueeze(0).expand(shape));
    out.push_back(copies.requires_grad_(requires_grad));
  }
  return out;
}

std::vector<size_t> AdaptedIndices(const std::vector<bool>& adapt) {
  std::vector<size_t> index;
  for (size_t i = 0; i < adapt.size(); ++i) {
    if (adapt[i]) index.push_back(i);
  }
  return index;
}

std::vector<at::Tensor> Pick(const TensorList& params, const std::vector<size_t>& index) {
  std::vector<at::Tensor> picked;
  picked.reserve(index.size());
  for (size_t i : index) picked.push_back(params[i]);
  return picked;
}

at::Tensor InnerUpdate(const InnerRule& rule, size_t i, const at::Tensor& phi,
                       const at::Tensor& g) {
  if (!rule.alphas.empty()) return phi - rule.alphas[i] * g;
  // phi + g * (-lr) has the bits of phi - g * lr (negation is exact and rounding is
  // symmetric), and its backward hands the gradient to both addends without the extra
  // pass over the tensor that subtraction's negation costs.
  return phi + g * (-rule.lr);
}

TensorList AdaptWithoutGraph(const Model& model, LossKind loss, const InnerRule& rule,
                             TensorList phi, const at::Tensor& x, const at::Tensor& y, int steps) {
  for (auto& p : phi) p = p.detach();
  const std::vector<size_t> index = AdaptedIndices(rule.adapt);
  for (int s = 0; s < steps; ++s) {
    {
      at::AutoGradMode grad_mode(true);
      for (size_t i : index) phi[i].requires_grad_(true);
      at::Tensor total = PerTaskLoss(loss, model.Forward(phi, x), y).sum();
      auto grads = torch::autograd::grad({total}, Pick(phi, index), {}, /*retain_graph=*/false,
                                         /*create_graph=*/false);
      at::NoGradGuard no_grad;
      for (size_t k = 0; k < index.size(); ++k) {
        const size_t i = index[k];
        phi[i] = InnerUpdate(rule, i, phi[i].detach(), grads[k]);
      }
    }
  }
  for (auto& p : phi) p = p.detach();
  return phi;
}

void QueryMetrics(const Model& model, LossKind loss, const TensorList& phi, const at::Tensor& x,
                  const at::Tensor& y, at::Tensor* loss_out, at::Tensor* accuracy_out) {
  at::NoGradGuard no_grad;
  TensorList detached;
  for (const auto& p : phi) detached.push_back(p.detach());
  at::Tensor out = model.Forward(detached, x);
  *loss_out = PerTaskLoss(loss, out, y);
  *accuracy_out = loss == LossKind::kCrossEntropy ? PerTaskAccuracy(out, y) : at::Tensor();
}

}  // namespace metatrain::meta::internal
