// inner.recompute (NOTE [Recomputed inner steps], common/meta/maml_learner.cc): the
// second-order meta-gradient rebuilt one inner step at a time has the stored-graph
// gradient's bits (that gradient is checked against finite differences in
// learner_test.cc), for every second-order algorithm and model, and its peak tensor memory
// stays near one step's whatever the number of inner steps.

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/meta/algorithm_catalog.h"
#include "common/meta/job_spec.h"
#include "common/meta/learner.h"
#include "common/meta/model.h"
#include "tests/common/meta/meta_test_util.h"

namespace metatrain::meta {
namespace {

using testing::ClassificationBatch;
using testing::ConvSpec;
using ::testing::HasSubstr;
using testing::LearnerSpec;
using testing::MlpSpec;
using testing::RegressionBatch;
using testing::SharedModel;

std::unique_ptr<MetaLearner> Learner(const std::string& algorithm,
                                     std::shared_ptr<const Model> model, LossKind loss, int steps,
                                     double lr, bool recompute) {
  v1::JobSpec spec = LearnerSpec(algorithm, steps, lr);
  spec.mutable_inner()->set_recompute(recompute);
  return testing::LearnerFor(spec, std::move(model), loss);
}

struct Case {
  std::string name;
  std::shared_ptr<const Model> model;
  LossKind loss;
  TaskBatch tasks;
  int steps;
  double lr;
};

std::vector<Case> Cases(at::ScalarType dtype) {
  return {
      {"sinusoid mlp", SharedModel(MlpSpec({8, 8}, false), {1}, 1), LossKind::kMse,
       RegressionBatch(31, 3, 5, 6, {1}, 1, dtype), 4, 0.2},
      {"batch-norm mlp", SharedModel(MlpSpec({9, 5}, true), {1, 6, 6}, 3), LossKind::kCrossEntropy,
       ClassificationBatch(32, 3, 3, 4, {1, 6, 6}, 3, dtype), 3, 0.5},
      {"conv net", SharedModel(ConvSpec(3), {1, 16, 16}, 3), LossKind::kCrossEntropy,
       ClassificationBatch(33, 2, 3, 3, {1, 16, 16}, 3, dtype), 2, 0.5},
  };
}

// Every parameter of these models feeds one autograd node per inner step, so the
// recomputed backward adds each leaf's contributions in the stored graph's order: the bits
// are the same (NOTE [Recomputed inner steps]). A wrong term would differ by far more than
// rounding; the reported difference says which.
TEST(RecomputeTest, GivesTheStoredGraphsBitsForEverySecondOrderAlgorithmAndModel) {
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    for (const Case& c : Cases(dtype)) {
      for (const char* algorithm : {"maml", "meta_sgd", "anil"}) {
        SCOPED_TRACE(c.name + " " + algorithm + " " + c10::toString(dtype));
        auto stored = Learner(algorithm, c.model, c.loss, c.steps, c.lr, false);
        auto recomputed = Learner(algorithm, c.model, c.loss, c.steps, c.lr, true);
        Rng rng(7);
        TensorList theta = stored->InitialMetaParams(rng, dtype);
        auto want = stored->ComputeMetaGradients(theta, c.tasks);
        auto got = recomputed->ComputeMetaGradients(theta, c.tasks);
        ASSERT_TRUE(want.ok()) << want.status();
        ASSERT_TRUE(got.ok()) << got.status();
        ASSERT_EQ(got->per_task.size(), want->per_task.size());
        for (size_t i = 0; i < want->per_task.size(); ++i) {
          ASSERT_EQ(got->per_task[i].sizes(), want->per_task[i].sizes());
          EXPECT_TRUE(at::equal(got->per_task[i], want->per_task[i]))
              << stored->meta_param_specs()[i].name << ": max diff "
              << (got->per_task[i] - want->per_task[i]).abs().max().item<double>() << " of "
              << want->per_task[i].abs().max().item<double>();
          EXPECT_GT(want->per_task[i].abs().max().item<double>(), 0)
              << "a zero gradient would match anything";
        }
        EXPECT_TRUE(at::equal(got->query_loss, want->query_loss));
        if (c.loss == LossKind::kCrossEntropy) {
          EXPECT_TRUE(at::equal(got->query_accuracy, want->query_accuracy));
        }
      }
    }
  }
}

TEST(RecomputeTest, ZeroInnerStepsIsTheQueryGradient) {
  const Case c = Cases(at::kDouble)[0];
  auto stored = Learner("meta_sgd", c.model, c.loss, 0, c.lr, false);
  auto recomputed = Learner("meta_sgd", c.model, c.loss, 0, c.lr, true);
  Rng rng(8);
  TensorList theta = stored->InitialMetaParams(rng, at::kDouble);
  auto want = stored->ComputeMetaGradients(theta, c.tasks);
  auto got = recomputed->ComputeMetaGradients(theta, c.tasks);
  ASSERT_TRUE(want.ok() && got.ok());
  for (size_t i = 0; i < want->per_task.size(); ++i) {
    EXPECT_TRUE(at::equal(got->per_task[i], want->per_task[i])) << i;
  }
}

// Counts the bytes of live CPU tensors (every at::empty goes through the CPU allocator),
// so the peak is exact and does not depend on what else the machine does. Some kernels
// (oneDNN's) free through raw_deleter(), which sees only the data pointer: each block
// keeps its size in a header just before the data.
class CountingAllocator final : public c10::Allocator {
 public:
  // One instance for the process: blocks it handed out may be freed after Uninstall.
  static CountingAllocator& Instance() {
    static CountingAllocator* const counter = new CountingAllocator(c10::GetCPUAllocator());
    return *counter;
  }
  static CountingAllocator& Install() {
    CountingAllocator& counter = Instance();
    c10::SetCPUAllocator(&counter, kPriority);
    return counter;
  }
  void Uninstall() { c10::SetCPUAllocator(base_, kPriority); }

  c10::DataPtr allocate(size_t bytes) const override {
    auto* block = static_cast<char*>(base_->raw_allocate(bytes + kHeader));
    *reinterpret_cast<size_t*>(block) = bytes;
    const int64_t now = live_ += static_cast<int64_t>(bytes);
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    void* data = block + kHeader;
    return {data, data, &Release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &Release; }

  void ResetPeak() { peak_ = live_.load(); }
  int64_t peak() const { return peak_; }
  int64_t live() const { return live_; }

 private:
  static constexpr size_t kHeader = 64;  // keeps the base allocator's alignment
  static constexpr uint8_t kPriority = 100;

  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}

  static void Release(void* data) {
    if (data == nullptr) return;
    char* block = static_cast<char*>(data) - kHeader;
    const CountingAllocator& self = Instance();
    self.live_ -= static_cast<int64_t>(*reinterpret_cast<size_t*>(block));
    self.base_->raw_deallocate(block);
  }

  c10::Allocator* const base_;
  mutable std::atomic<int64_t> live_{0};
  mutable std::atomic<int64_t> peak_{0};
};

// Peak bytes of live tensors above those alive before, during one meta-gradient.
int64_t PeakBytes(CountingAllocator& counter, const MetaLearner& learner, const TensorList& theta,
                  const TaskBatch& tasks) {
  const int64_t before = counter.live();
  counter.ResetPeak();
  auto grads = learner.ComputeMetaGradients(theta, tasks);
  EXPECT_TRUE(grads.ok()) << grads.status();
  return counter.peak() - before;
}

TEST(RecomputeTest, PeakTensorMemoryStaysNearOneStepWhateverTheSteps) {
  // A conv net on 28x28 images: a step's activations outweigh its parameters, which is
  // where recomputation pays (a wide MLP on 5 examples is mostly parameters, and every
  // step's parameters are kept either way).
  auto model = SharedModel(ConvSpec(8), {1, 28, 28}, 5);
  const TaskBatch tasks = ClassificationBatch(34, 2, 5, 10, {1, 28, 28}, 5, at::kFloat);
  CountingAllocator& counter = CountingAllocator::Install();
  std::vector<int64_t> stored, recomputed;
  for (int steps : {1, 8}) {
    for (bool recompute : {false, true}) {
      auto learner = Learner("maml", model, LossKind::kCrossEntropy, steps, 0.4, recompute);
      Rng rng(9);
      TensorList theta = learner->InitialMetaParams(rng, at::kFloat);
      (recompute ? recomputed : stored).push_back(PeakBytes(counter, *learner, theta, tasks));
    }
  }
  counter.Uninstall();
  std::printf("peak tensor bytes, 1 / 8 inner steps: stored %lld / %lld, recomputed %lld / %lld\n",
              static_cast<long long>(stored[0]), static_cast<long long>(stored[1]),
              static_cast<long long>(recomputed[0]), static_cast<long long>(recomputed[1]));
  // Stored: eight steps' graphs (4.1x one step's when written); the peak grows with steps.
  EXPECT_GT(stored[1], 3 * stored[0]);
  // Recomputed: one step's graph plus eight steps' parameters (1.04x when written).
  EXPECT_LT(recomputed[1], recomputed[0] * 5 / 4);
  EXPECT_LT(recomputed[1], stored[1] / 3);
}

TEST(RecomputeTest, OnlySecondOrderAlgorithmsTakeIt) {
  for (const char* algorithm : {"fomaml", "reptile", "meta_lstm", "protonet"}) {
    v1::JobSpec spec;
    spec.set_algorithm(algorithm);
    spec.mutable_inner()->set_recompute(true);
    absl::Status s = CheckOptionsApply(spec);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << algorithm;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("inner.recompute does not apply to algorithm '" + std::string(algorithm) +
                          "' (only to maml, meta_sgd, anil"));
  }
  for (const char* algorithm : {"maml", "meta_sgd", "anil"}) {
    v1::JobSpec spec;
    spec.set_algorithm(algorithm);
    spec.mutable_inner()->set_recompute(true);
    EXPECT_TRUE(CheckOptionsApply(spec).ok()) << algorithm;
  }
  // The learner factory refuses it too, for callers that skip normalisation.
  v1::JobSpec spec = LearnerSpec("fomaml", 2, 0.1);
  spec.mutable_inner()->set_recompute(true);
  auto learner = MakeMetaLearner(spec, SharedModel(MlpSpec({4}, false), {1}, 1), LossKind::kMse);
  EXPECT_EQ(learner.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(learner.status().message()), HasSubstr("inner.recompute"));
}

}  // namespace
}  // namespace metatrain::meta
