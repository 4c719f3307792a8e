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
  // Every op below keeps tasks apart bit for bit; see NOTE [Task independence is bitwise]
  // in batched_ops.h for why this is not a grouped convolution.
  at::Tensor h = x;  // [T, B, C, H, W]
  for (int block = 0; block < kBlocks; ++block) {
    const int64_t height = h.size(3), width = h.size(4);
    at::Tensor y = internal::BatchedConv3x3(h, params[4 * block], params[4 * block + 1]);
    y = at::relu(internal::BatchNormOverLast(y, params[4 * block + 2], params[4 * block + 3]));
    // [T, F, B*H*W] -> planes [T*F*B, H, W] -> pooled -> [T, B, F, H/2, W/2].
    y = at::max_pool2d(y.reshape({t * filters_ * b, height, width}), /*kernel_size=*/{2, 2},
                       /*stride=*/{2, 2});
    h = y.reshape({t, filters_, b, height / 2, width / 2}).permute({0, 2, 1, 3, 4});
  }
  // Each task's features flattened as torch.flatten(1) does on [B, F, h, w].
  at::Tensor features = h.reshape({t, b, feature_size_});
  return internal::BatchedLinear(features, params[4 * kBlocks], params[4 * kBlocks + 1]);
}

}  // namespace metatrain::meta
