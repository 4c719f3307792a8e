#include "common/meta/conv_net.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/batched_ops.h"
#include "common/meta/max_pool.h"

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
  return internal::BatchedLinear(Embed(params, x), params[4 * kBlocks], params[4 * kBlocks + 1]);
}

at::Tensor ConvNet::Embed(const TensorList& params, const at::Tensor& x) const {
  const int64_t t = x.size(0), b = x.size(1);
  // The convolutional body runs task by task (each call still covers the task's B
  // images); see NOTE [Task independence is bitwise] in batched_ops.h for why this, and
  // not a grouped convolution or a batched im2col + bmm, is bitwise task-independent and
  // fast. unbind/stack keep the autograd graph to one node per
  // parameter rather than one per task.
  const std::vector<at::Tensor> inputs = x.unbind(0);
  std::vector<std::vector<at::Tensor>> body(4 * kBlocks);
  for (int i = 0; i < 4 * kBlocks; ++i) body[i] = params[i].unbind(0);
  std::vector<at::Tensor> features(t);
  for (int64_t task = 0; task < t; ++task) {
    at::Tensor h = inputs[task];  // [B, C, H, W]
    for (int block = 0; block < kBlocks; ++block) {
      auto p = [&](int i) -> const at::Tensor& { return body[4 * block + i][task]; };
      // at::conv2d takes oneDNN for float32 on the CPU: 2-3x ATen's im2col + GEMM
      // (thnn_conv2d) on these shapes. Its sums are split by the intra-op thread count,
      // which is why every task runs on one (NOTE [One intra-op thread per task]).
      h = at::conv2d(h, p(0), p(1), /*stride=*/{1, 1}, /*padding=*/{1, 1});
      h = at::batch_norm(h, p(2), p(3), /*running_mean=*/{}, /*running_var=*/{},
                         /*training=*/true, /*momentum=*/0.1, internal::kBatchNormEps,
                         /*cudnn_enabled=*/true);
      // NOTE [Pool before ReLU]: max-pooling and ReLU commute, value for value (both are
      // exact selections, and max(relu(a), relu(b)) = relu(max(a, b))), and so do their
      // gradients: a window whose maximum is <= 0 sends zero either way, otherwise the
      // same element receives the same gradient. Pooling first runs ReLU and its
      // backward (and the backward's own backward, second order) on a quarter of the
      // elements: these elementwise passes took 30% of a conv MAML step when ReLU came
      // first. conv_net_test checks the meta-gradients' bits against ReLU first.
      h = at::relu(internal::MaxPool2x2(h));  // NOTE [A max-pool kernel of our own]
    }
    features[task] = h.reshape({b, feature_size_});  // torch.flatten(1) order
  }
  return at::stack(features);
}

}  // namespace metatrain::meta
