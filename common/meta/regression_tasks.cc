// Regression families: sinusoids (the MAML paper's toy problem) and linear functions.

#include <cmath>
#include <vector>

#include "common/meta/rng.h"
#include "common/meta/task_family_impl.h"

namespace metatrain::meta {
namespace {

// Builds x [T, n, d] / y [T, n, 1] tensors from per-task sample functions.
class RegressionTasks : public TaskFamily {
 public:
  RegressionTasks(const v1::TaskSpec& spec, uint64_t seed, int64_t input_dim)
      : shots_(spec.shots()), query_(spec.query_size()), input_dim_(input_dim), seed_(seed) {}

  std::vector<int64_t> input_shape() const override { return {input_dim_}; }
  int64_t output_size() const override { return 1; }
  LossKind loss() const override { return LossKind::kMse; }

  absl::StatusOr<TaskBatch> Sample(absl::Span<const TaskKey> keys,
                                   at::ScalarType dtype) const override {
    const int64_t t = static_cast<int64_t>(keys.size());
    const int64_t n = shots_ + query_;
    std::vector<double> x(t * n * input_dim_), y(t * n);
    for (int64_t i = 0; i < t; ++i) {
      Rng rng(TaskSeed(seed_, keys[i]));
      SampleTask(rng, n, &x[i * n * input_dim_], &y[i * n]);
    }
    auto opts = at::TensorOptions().dtype(at::kDouble);
    // copy=true: from_blob aliases the local vectors, and to() of the same dtype would not copy.
    at::Tensor xs = at::from_blob(x.data(), {t, n, input_dim_}, opts).to(dtype, false, true);
    at::Tensor ys = at::from_blob(y.data(), {t, n, 1}, opts).to(dtype, false, true);
    TaskBatch batch;
    batch.support_x = xs.narrow(1, 0, shots_).contiguous();
    batch.support_y = ys.narrow(1, 0, shots_).contiguous();
    batch.query_x = xs.narrow(1, shots_, query_).contiguous();
    batch.query_y = ys.narrow(1, shots_, query_).contiguous();
    return batch;
  }

 protected:
  // Draws one task's function from `rng`, then n points (x row-major [n, input_dim]).
  virtual void SampleTask(Rng& rng, int64_t n, double* x, double* y) const = 0;
  int64_t input_dim() const { return input_dim_; }

 private:
  int64_t shots_, query_, input_dim_;
  uint64_t seed_;
};

class SinusoidTasks : public RegressionTasks {
 public:
  SinusoidTasks(const v1::TaskSpec& spec, uint64_t seed) : RegressionTasks(spec, seed, 1) {}

 protected:
  void SampleTask(Rng& rng, int64_t n, double* x, double* y) const override {
    const double amplitude = rng.Uniform(0.1, 5.0);
    const double phase = rng.Uniform(0.0, M_PI);
    for (int64_t j = 0; j < n; ++j) {
      x[j] = rng.Uniform(-5.0, 5.0);
      y[j] = amplitude * std::sin(x[j] - phase);
    }
  }
};

class LinearTasks : public RegressionTasks {
 public:
  LinearTasks(const v1::TaskSpec& spec, uint64_t seed)
      : RegressionTasks(spec, seed, spec.input_dim()), noise_std_(spec.noise_std()) {}

 protected:
  void SampleTask(Rng& rng, int64_t n, double* x, double* y) const override {
    const int64_t d = input_dim();
    std::vector<double> w(d);
    for (auto& v : w) v = rng.Normal();
    const double b = rng.Normal();
    for (int64_t j = 0; j < n; ++j) {
      double value = b;
      for (int64_t k = 0; k < d; ++k) {
        x[j * d + k] = rng.Uniform(-5.0, 5.0);
        value += w[k] * x[j * d + k];
      }
      if (noise_std_ > 0) value += noise_std_ * rng.Normal();
      y[j] = value;
    }
  }

 private:
  double noise_std_;
};

}  // namespace

std::unique_ptr<TaskFamily> MakeSinusoidTasks(const v1::TaskSpec& spec, uint64_t seed) {
  return std::make_unique<SinusoidTasks>(spec, seed);
}

std::unique_ptr<TaskFamily> MakeLinearTasks(const v1::TaskSpec& spec, uint64_t seed) {
  return std::make_unique<LinearTasks>(spec, seed);
}

}  // namespace metatrain::meta
