#ifndef METATRAIN_TESTS_COMMON_META_META_TEST_UTIL_H_
#define METATRAIN_TESTS_COMMON_META_META_TEST_UTIL_H_

// Small helpers for the meta-learning core's tests: random task batches drawn from our
// Rng (so test data is the same on every machine), specs, and a slice of a batch.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/meta/learner.h"
#include "common/meta/model.h"
#include "common/meta/rng.h"
#include "common/meta/task_family.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta::testing {

// The model of `spec`, shared as learners take it; a spec that does not build fails the
// test (and gives nullptr).
inline std::shared_ptr<const Model> SharedModel(const v1::ModelSpec& spec,
                                                std::vector<int64_t> input, int64_t out) {
  auto model = MakeModel(spec, std::move(input), out);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  return std::shared_ptr<const Model>(std::move(model).value());
}

// The learner of `spec` on `model`; a spec it refuses fails the test (and gives nullptr).
inline std::unique_ptr<MetaLearner> LearnerFor(const v1::JobSpec& spec,
                                               std::shared_ptr<const Model> model, LossKind loss) {
  auto learner = MakeMetaLearner(spec, std::move(model), loss);
  EXPECT_TRUE(learner.ok()) << learner.status();
  if (!learner.ok()) return nullptr;
  return std::move(learner).value();
}

inline at::Tensor RandomNormal(Rng& rng, std::vector<int64_t> shape, at::ScalarType dtype) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<double> values(n);
  for (double& v : values) v = rng.Normal();
  return at::tensor(values, at::kDouble).reshape(shape).to(dtype);
}

inline at::Tensor RandomLabels(Rng& rng, std::vector<int64_t> shape, int64_t classes) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<int64_t> values(n);
  for (int64_t& v : values) v = static_cast<int64_t>(rng.UniformInt(classes));
  return at::tensor(values, at::kLong).reshape(shape);
}

// x [T, n, input...] ~ N(0, 1); y [T, n, out] ~ N(0, 1).
inline TaskBatch RegressionBatch(uint64_t seed, int64_t tasks, int64_t support, int64_t query,
                                 std::vector<int64_t> input, int64_t out, at::ScalarType dtype) {
  Rng rng(seed);
  auto shape = [&](int64_t n) {
    std::vector<int64_t> s = {tasks, n};
    s.insert(s.end(), input.begin(), input.end());
    return s;
  };
  TaskBatch b;
  b.support_x = RandomNormal(rng, shape(support), dtype);
  b.support_y = RandomNormal(rng, {tasks, support, out}, dtype);
  b.query_x = RandomNormal(rng, shape(query), dtype);
  b.query_y = RandomNormal(rng, {tasks, query, out}, dtype);
  return b;
}

// Random images and labels in [0, classes).
inline TaskBatch ClassificationBatch(uint64_t seed, int64_t tasks, int64_t support, int64_t query,
                                     std::vector<int64_t> input, int64_t classes,
                                     at::ScalarType dtype) {
  Rng rng(seed);
  auto shape = [&](int64_t n) {
    std::vector<int64_t> s = {tasks, n};
    s.insert(s.end(), input.begin(), input.end());
    return s;
  };
  TaskBatch b;
  b.support_x = RandomNormal(rng, shape(support), dtype);
  b.support_y = RandomLabels(rng, {tasks, support}, classes);
  b.query_x = RandomNormal(rng, shape(query), dtype);
  b.query_y = RandomLabels(rng, {tasks, query}, classes);
  return b;
}

// Task t alone, as a batch of one.
inline TaskBatch Slice(const TaskBatch& b, int64_t t) {
  return TaskBatch{b.support_x.narrow(0, t, 1), b.support_y.narrow(0, t, 1),
                   b.query_x.narrow(0, t, 1), b.query_y.narrow(0, t, 1)};
}

inline v1::ModelSpec MlpSpec(std::vector<int64_t> hidden, bool batch_norm) {
  v1::ModelSpec spec;
  spec.set_kind("mlp");
  for (int64_t h : hidden) spec.add_hidden_sizes(h);
  spec.set_batch_norm(batch_norm);
  return spec;
}

inline v1::ModelSpec ConvSpec(int filters) {
  v1::ModelSpec spec;
  spec.set_kind("conv");
  spec.set_filters(filters);
  spec.set_batch_norm(true);
  return spec;
}

inline v1::JobSpec LearnerSpec(const std::string& algorithm, int steps, double lr) {
  v1::JobSpec spec;
  spec.set_algorithm(algorithm);
  spec.mutable_inner()->set_steps(steps);
  spec.mutable_inner()->set_lr(lr);
  return spec;
}

}  // namespace metatrain::meta::testing

#endif  // METATRAIN_TESTS_COMMON_META_META_TEST_UTIL_H_
