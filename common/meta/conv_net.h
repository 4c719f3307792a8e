#ifndef METATRAIN_COMMON_META_CONV_NET_H_
#define METATRAIN_COMMON_META_CONV_NET_H_

// The 4-block convolutional network of the MAML paper (Finn et al. 2017, after Vinyals
// et al. 2016): each block is a 3x3 convolution with `filters` channels (padding 1),
// batch norm, ReLU and 2x2 max-pooling (computed as pooling, then ReLU: the same bits,
// NOTE [Pool before ReLU] in conv_net.cc); a linear head maps the flattened features to
// the outputs. 28x28x1 Omniglot images end as filters x 1 x 1, 84x84x3 miniImageNet
// images as filters x 5 x 5 (pooling floors odd sizes, as nn.MaxPool2d does).
//
// Parameters are named like this PyTorch module (BatchNorm2d keeps no running
// statistics, so its state_dict has no buffers):
//
//   def block(cin, cout):
//       return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1),
//                            nn.BatchNorm2d(cout, track_running_stats=False),
//                            nn.ReLU(), nn.MaxPool2d(2))
//   class ConvNet(nn.Module):
//       def __init__(self, channels, filters, features, out):
//           super().__init__()
//           self.features = nn.Sequential(block(channels, filters), block(filters, filters),
//                                         block(filters, filters), block(filters, filters))
//           self.head = nn.Linear(features, out)
//       def forward(self, x):
//           return self.head(self.features(x).flatten(1))
//
// i.e. features.<block>.0.{weight,bias} (conv), features.<block>.1.{weight,bias} (batch
// norm) for block 0..3, then head.{weight,bias} (ParamSpec::head = true).
//
// Thread-safe (immutable).

#include <cstdint>
#include <vector>

#include "common/meta/model.h"

namespace metatrain::meta {

class ConvNet : public Model {
 public:
  static constexpr int kBlocks = 4;

  // input_shape is {C, H, W} with H, W >= 16 (so four poolings leave at least 1x1);
  // MakeModel validates.
  ConvNet(std::vector<int64_t> input_shape, int64_t filters, int64_t output_size);

  const std::vector<ParamSpec>& param_specs() const override { return specs_; }
  const std::vector<int64_t>& input_shape() const override { return input_shape_; }
  int64_t output_size() const override { return output_size_; }
  TensorList Initialize(Rng& rng, at::ScalarType dtype) const override;
  at::Tensor Forward(const TensorList& params, const at::Tensor& x) const override;
  at::Tensor Embed(const TensorList& params, const at::Tensor& x) const override;
  int64_t embedding_size() const override { return feature_size_; }
  // The body runs task by task (Embed): groups of one cost nothing in speed and hold one
  // task's second-order graph instead of the meta-batch's (2.4 GiB -> 0.36 GiB at meta-batch
  // 32, docs/benchmarks.md "Memory: task groups").
  int64_t default_task_group_size() const override { return 1; }

  // Flattened feature size entering the head.
  int64_t feature_size() const { return feature_size_; }

 private:
  std::vector<int64_t> input_shape_;
  int64_t filters_;
  int64_t output_size_;
  int64_t feature_size_;
  std::vector<ParamSpec> specs_;
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_CONV_NET_H_
