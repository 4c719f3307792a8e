#ifndef METATRAIN_COMMON_META_MLP_H_
#define METATRAIN_COMMON_META_MLP_H_

// A fully-connected network: Linear -> [BatchNorm] -> ReLU for each hidden width, then a
// Linear head. Inputs of any shape are flattened. With hidden widths {40, 40} it is the
// MAML sinusoid regressor; with {256, 128, 64, 64} and batch norm, the MAML paper's
// fully-connected Omniglot classifier.
//
// Parameters are named like this PyTorch module, so its state_dict maps one to one
// (BatchNorm1d keeps no running statistics, so the state_dict has no buffers):
//
//   class Mlp(nn.Module):
//       def __init__(self, in_features, hidden, out, batch_norm):
//           super().__init__()
//           layers, width = [], in_features
//           for h in hidden:
//               layers.append(nn.Linear(width, h))
//               if batch_norm:
//                   layers.append(nn.BatchNorm1d(h, track_running_stats=False))
//               layers.append(nn.ReLU())
//               width = h
//           layers.append(nn.Linear(width, out))
//           self.layers = nn.Sequential(*layers)
//       def forward(self, x):
//           return self.layers(x.flatten(1))
//
// e.g. hidden {40, 40} without batch norm: layers.0.{weight,bias}, layers.2.*, layers.4.*
// (the head, ParamSpec::head = true); with batch norm: layers.0 (Linear), layers.1
// (BatchNorm1d), layers.3, layers.4, layers.6 (head).
//
// Thread-safe (immutable).

#include <cstdint>
#include <vector>

#include "common/meta/model.h"

namespace metatrain::meta {

class Mlp : public Model {
 public:
  // Widths must be > 0 (MakeModel validates).
  Mlp(std::vector<int64_t> input_shape, std::vector<int64_t> hidden_sizes, bool batch_norm,
      int64_t output_size);

  const std::vector<ParamSpec>& param_specs() const override { return specs_; }
  const std::vector<int64_t>& input_shape() const override { return input_shape_; }
  int64_t output_size() const override { return output_size_; }
  TensorList Initialize(Rng& rng, at::ScalarType dtype) const override;
  at::Tensor Forward(const TensorList& params, const at::Tensor& x) const override;
  // The last hidden layer's activations (after ReLU); with no hidden layers, the
  // flattened input.
  at::Tensor Embed(const TensorList& params, const at::Tensor& x) const override;
  int64_t embedding_size() const override {
    return hidden_sizes_.empty() ? in_features_ : hidden_sizes_.back();
  }

 private:
  enum class Init { kLinear, kOnes, kZeros };
  std::vector<int64_t> input_shape_;
  int64_t in_features_;
  std::vector<int64_t> hidden_sizes_;
  bool batch_norm_;
  int64_t output_size_;
  std::vector<ParamSpec> specs_;
  std::vector<Init> init_;
  std::vector<int64_t> fan_in_;
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_MLP_H_
