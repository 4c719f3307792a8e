#include "common/meta/max_pool.h"

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdint>

namespace metatrain::meta::internal {
namespace {

// ATen's update rule (aten/src/ATen/native/cpu/MaxPoolKernel.cpp, cpu_max_pool): a value
// replaces the running maximum when greater, or when NaN.
template <typename T>
inline void Consider(T value, int64_t index, T& best, int64_t& best_index) {
  if (value > best || std::isnan(value)) {
    best = value;
    best_index = index;
  }
}

template <typename T>
void PoolPlanes(const T* in, T* out, int64_t* indices, int64_t planes, int64_t height,
                int64_t width) {
  const int64_t out_height = height / 2, out_width = width / 2;
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* x = in + plane * height * width;
    for (int64_t oh = 0; oh < out_height; ++oh) {
      const int64_t top = 2 * oh * width;
      const int64_t bottom = top + width;
      for (int64_t ow = 0; ow < out_width; ++ow) {
        const int64_t left = 2 * ow;
        // The first element always wins against ATen's starting -infinity (or ties with
        // it, keeping the same index).
        T best = x[top + left];
        int64_t best_index = top + left;
        Consider(x[top + left + 1], top + left + 1, best, best_index);
        Consider(x[bottom + left], bottom + left, best, best_index);
        Consider(x[bottom + left + 1], bottom + left + 1, best, best_index);
        *out++ = best;
        *indices++ = best_index;
      }
    }
  }
}

class MaxPool2x2Function : public torch::autograd::Function<MaxPool2x2Function> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input) {
    const at::Tensor x = input.contiguous();
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    at::Tensor out = at::empty({n, c, h / 2, w / 2}, x.options());
    at::Tensor indices = at::empty({n, c, h / 2, w / 2}, x.options().dtype(at::kLong));
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "MaxPool2x2", [&] {
      PoolPlanes<scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                           indices.data_ptr<int64_t>(), n * c, h, w);
    });
    // The backward needs the input's shape, not its values: keeping only the shape lets
    // the input (a batch-norm output, nothing else holds it) be freed after the forward.
    ctx->save_for_backward({indices});
    ctx->saved_data["sizes"] = x.sizes();
    ctx->mark_non_differentiable({indices});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor indices = ctx->get_saved_variables()[0];
    // A stand-in with the input's shape and no storage of its own. It needs no gradient,
    // so the double backward also skips the zeros ATen's formula gives the input.
    const at::Tensor shape =
        at::zeros({1}, grads[0].options()).expand(ctx->saved_data["sizes"].toIntVector());
    return {at::max_pool2d_with_indices_backward(grads[0], shape, /*kernel_size=*/{2, 2},
                                                 /*stride=*/{2, 2}, /*padding=*/{0, 0},
                                                 /*dilation=*/{1, 1}, /*ceil_mode=*/false,
                                                 indices)};
  }
};

}  // namespace

at::Tensor MaxPool2x2(const at::Tensor& x) {
  const bool ours = x.device().is_cpu() && x.dim() == 4 && x.size(2) >= 2 && x.size(3) >= 2 &&
                    (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble);
  if (!ours) return at::max_pool2d(x, /*kernel_size=*/{2, 2}, /*stride=*/{2, 2});
  return MaxPool2x2Function::apply(x);
}

}  // namespace metatrain::meta::internal
