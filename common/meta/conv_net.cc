#include "common/meta/conv_net.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/batched_ops.h"

namespace metatrain::meta {

ConvNet::ConvNet(std::vector<int64_t> input_shape, int64_t filters, int64_t output_size)
    : input_shape_(std::move(input_shape)), filters_(filters), output_size_(output_size) {
  int64_t channels = input_shape_[0], height = input_shape_[1], width = input_shape_[2];
  for (int block = 0; block < kBlocks; ++block) {
    const std::string conv = absl::StrCat("features.", block, ".0");
    const std::string bn = absl::StrCat("features.", block, ".1");
    specs_.push_back({conv + ".weight", {filters_, channels, 3, 3}, false});
    specs_.push_back({conv + ".bias", {filters_}, false});
    specs_.push_back({bn + ".weight", {filters_}, false});
    specs_.push_back({bn + ".bias", {filters_}, false});
    channels = filters_;
    height /= 2;
    width /= 2;
  }
  feature_size_ = filters_ * height * width;
  specs_.push_back({"head.weight", {output_size_, feature_size_}, true});
  specs_.push_back({"head.bias", {output_size_}, true});
}

TensorList ConvNet::Initialize(Rng& rng, at::ScalarType dtype) const {
  TensorList params;
  params.reserve(specs_.size());
  const auto options = at::TensorOptions().dtype(dtype);
  for (int block = 0; block < kBlocks; ++block) {
    const auto& weight = specs_[4 * block].shape;
    const double bound = internal::DefaultInitBound(weight[1] * weight[2] * weight[3]);
    params.push_back(internal::UniformTensor(rng, weight, bound, dtype));
    params.push_back(internal::UniformTensor(rng, specs_[4 * block + 1].shape, bound, dtype));
    params.push_back(at::ones({filters_}, options));
    params.push_back(at::zeros({filters_}, options));
  }
  const double bound = internal::DefaultInitBound(feature_size_);
  params.push_back(internal::UniformTensor(rng, specs_[4 * kBlocks].shape, bound, dtype));
  params.push_back(internal::UniformTensor(rng, specs_[4 * kBlocks + 1].shape, bound, dtype));
  return params;
}

at::Tensor ConvNet::Forward(const TensorList& params, const at::Tensor& x) const {
  const int64_t t = x.size(0), b = x.size(1);
  // [T, B, C, H, W] -> [B, T*C, H, W]: each task's channels form one convolution group,
  // and batch norm's per-channel statistics become per (task, channel).
  at::Tensor h = x.transpose(0, 1).reshape({b, t * input_shape_[0], input_shape_[1],
                                            input_shape_[2]});
  for (int block = 0; block < kBlocks; ++block) {
    const at::Tensor& weight = params[4 * block];  // [T, F, Cin, 3, 3]
    at::Tensor w = weight.reshape({t * filters_, weight.size(2), 3, 3});
    h = at::conv2d(h, w, params[4 * block + 1].reshape({t * filters_}), /*stride=*/{1, 1},
                   /*padding=*/{1, 1}, /*dilation=*/{1, 1}, /*groups=*/t);
    h = internal::BatchedBatchNorm2d(h, params[4 * block + 2], params[4 * block + 3]);
    h = at::relu(h);
    h = at::max_pool2d(h, /*kernel_size=*/{2, 2}, /*stride=*/{2, 2});
  }
  // [B, T*F, h, w] -> [T, B, F*h*w], flattening each task's features as torch.flatten(1).
  at::Tensor features = h.reshape({b, t, feature_size_}).transpose(0, 1);
  return internal::BatchedLinear(features, params[4 * kBlocks], params[4 * kBlocks + 1]);
}

}  // namespace metatrain::meta
