#ifndef METATRAIN_TESTS_COORDINATOR_TEST_SPECS_H_
#define METATRAIN_TESTS_COORDINATOR_TEST_SPECS_H_

// Small, fast jobs for coordinator tests, and comparison with the single-process trainer.

#include <gtest/gtest.h>

#include <string>

#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/meta/trainer.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::testing {

// Sinusoid regression, a 40-40 MLP, 4 tasks per step.
inline v1::JobSpec SmallSinusoidSpec(const std::string& algorithm, int64_t steps) {
  v1::JobSpec spec;
  spec.set_name("test");
  spec.set_algorithm(algorithm);
  spec.mutable_tasks()->set_family("sinusoid");
  spec.mutable_tasks()->set_shots(5);
  spec.set_meta_batch_size(4);
  spec.set_steps(steps);
  spec.set_validation_interval(2);
  spec.set_validation_tasks(6);
  spec.set_test_tasks(7);
  spec.set_seed(1234);
  return spec;
}

// 3-way image classification (synthetic images, 14x14), a 32-unit MLP, 4 tasks per step,
// validated every step.
inline v1::JobSpec SmallImageSpec(int64_t steps, uint64_t seed) {
  v1::JobSpec spec;
  spec.set_algorithm("maml");
  spec.mutable_model()->add_hidden_sizes(32);
  spec.mutable_tasks()->set_family("synthetic_images");
  spec.mutable_tasks()->set_ways(3);
  spec.mutable_tasks()->set_query_size(2);
  spec.mutable_tasks()->set_image_size(14);
  spec.set_meta_batch_size(4);
  spec.set_steps(steps);
  spec.set_validation_interval(1);
  spec.set_test_tasks(5);
  spec.set_seed(seed);
  return spec;
}

inline meta::JobContext MakeContext(const v1::JobSpec& spec) {
  auto normalized = meta::NormalizeJobSpec(spec);
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  auto context = meta::MakeJobContext(*normalized);
  EXPECT_TRUE(context.ok()) << context.status();
  return std::move(context).value();
}

inline meta::TensorList ParamsFromCheckpoint(const meta::JobContext& context,
                                             const std::string& bytes) {
  auto dict = meta::DeserializeStateDict(bytes);
  EXPECT_TRUE(dict.ok()) << dict.status();
  if (!dict.ok()) return {};
  auto params = meta::FromStateDict(context.learner->meta_param_specs(), *dict, context.dtype);
  EXPECT_TRUE(params.ok()) << params.status();
  return params.ok() ? *params : meta::TensorList{};
}

inline void ExpectBitIdentical(const meta::TensorList& expected, const meta::TensorList& actual) {
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(at::equal(expected[i], actual[i]))
        << "tensor " << i
        << " differs; max |diff| = " << (expected[i] - actual[i]).abs().max().item<double>();
  }
}

}  // namespace metatrain::testing

#endif  // METATRAIN_TESTS_COORDINATOR_TEST_SPECS_H_
