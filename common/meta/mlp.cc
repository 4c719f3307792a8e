#include "common/meta/mlp.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/batched_ops.h"

namespace metatrain::meta {

Mlp::Mlp(std::vector<int64_t> input_shape, std::vector<int64_t> hidden_sizes, bool batch_norm,
         int64_t output_size)
    : input_shape_(std::move(input_shape)),
      hidden_sizes_(std::move(hidden_sizes)),
      batch_norm_(batch_norm),
      output_size_(output_size) {
  in_features_ = 1;
  for (int64_t d : input_shape_) in_features_ *= d;
  int64_t index = 0;  // position in the equivalent nn.Sequential
  int64_t width = in_features_;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, Init init, int64_t fan_in) {
    specs_.push_back(ParamSpec{name, std::move(shape), false});
    init_.push_back(init);
    fan_in_.push_back(fan_in);
  };
  for (int64_t h : hidden_sizes_) {
    const std::string linear = absl::StrCat("layers.", index++);
    add(linear + ".weight", {h, width}, Init::kLinear, width);
    add(linear + ".bias", {h}, Init::kLinear, width);
    if (batch_norm_) {
      const std::string bn = absl::StrCat("layers.", index++);
      add(bn + ".weight", {h}, Init::kOnes, 0);
      add(bn + ".bias", {h}, Init::kZeros, 0);
    }
    ++index;  // ReLU
    width = h;
  }
  const std::string head = absl::StrCat("layers.", index);
  add(head + ".weight", {output_size_, width}, Init::kLinear, width);
  add(head + ".bias", {output_size_}, Init::kLinear, width);
  specs_[specs_.size() - 1].head = true;
  specs_[specs_.size() - 2].head = true;
}

TensorList Mlp::Initialize(Rng& rng, at::ScalarType dtype) const {
  TensorList params;
  params.reserve(specs_.size());
  const auto options = at::TensorOptions().dtype(dtype);
  for (size_t i = 0; i < specs_.size(); ++i) {
    switch (init_[i]) {
      case Init::kLinear:
        params.push_back(internal::UniformTensor(rng, specs_[i].shape,
                                                 internal::DefaultInitBound(fan_in_[i]), dtype));
        break;
      case Init::kOnes:
        params.push_back(at::ones(specs_[i].shape, options));
        break;
      case Init::kZeros:
        params.push_back(at::zeros(specs_[i].shape, options));
        break;
    }
  }
  return params;
}

at::Tensor Mlp::Forward(const TensorList& params, const at::Tensor& x) const {
  const size_t head = specs_.size() - 2;
  return internal::BatchedLinear(Embed(params, x), params[head], params[head + 1]);
}

at::Tensor Mlp::Embed(const TensorList& params, const at::Tensor& x) const {
  at::Tensor h = x.reshape({x.size(0), x.size(1), in_features_});
  size_t p = 0;
  for (size_t layer = 0; layer < hidden_sizes_.size(); ++layer) {
    h = internal::BatchedLinear(h, params[p], params[p + 1]);
    p += 2;
    if (batch_norm_) {
      h = internal::BatchNormOverBatch(h, params[p], params[p + 1]);
      p += 2;
    }
    h = at::relu(h);
  }
  return h;
}

}  // namespace metatrain::meta
