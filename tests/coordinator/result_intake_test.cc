#include "coordinator/result_intake.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

namespace metatrain::coordinator {
namespace {

using ::testing::HasSubstr;

const std::vector<meta::ParamSpec> kSpecs = {{"w", {2, 3}, false}, {"b", {2}, true}};

meta::TensorList Gradient(float start) {
  return {at::arange(6, at::kFloat).add(start).reshape({2, 3}), at::arange(2, at::kFloat)};
}

// The messages a worker sends for task `t`'s gradient, in chunks of at most 8 bytes.
std::vector<v1::TaskGradient> Messages(int64_t t, const meta::TensorList& gradient,
                                       double loss = 0.5, double accuracy = 0.75) {
  auto chunks = rpc::EncodeTensors(gradient, kSpecs, 8);
  EXPECT_TRUE(chunks.ok()) << chunks.status();
  std::vector<v1::TaskGradient> out;
  for (size_t i = 0; i < chunks->size(); ++i) {
    v1::TaskGradient g;
    g.set_task_index(t);
    *g.mutable_chunk() = (*chunks)[i];
    g.set_last(i + 1 == chunks->size());
    g.set_query_loss(loss);
    g.set_query_accuracy(accuracy);
    out.push_back(g);
  }
  return out;
}

TEST(GradientIntakeTest, AcceptsEachTaskOnceItsLastChunkArrives) {
  GradientIntake intake(2, 4, kSpecs, at::kFloat, /*classification=*/true);
  std::vector<char> completed(4, 0);
  for (int64_t t : {3, 2}) {
    const auto messages = Messages(t, Gradient(static_cast<float>(t)));
    ASSERT_GT(messages.size(), 2u);
    for (size_t i = 0; i < messages.size(); ++i) {
      auto outcome = intake.Add(messages[i], completed);
      ASSERT_FALSE(outcome.refusal) << outcome.refusal->message;
      if (i + 1 < messages.size()) {
        ASSERT_FALSE(outcome.task) << i;
        continue;
      }
      ASSERT_TRUE(outcome.task);
      EXPECT_EQ(outcome.task->index, t);
      EXPECT_EQ(outcome.task->query_loss, 0.5);
      EXPECT_EQ(outcome.task->query_accuracy, 0.75);
      ASSERT_EQ(outcome.task->gradient.size(), 2u);
      for (size_t k = 0; k < 2; ++k) {
        EXPECT_TRUE(at::equal(outcome.task->gradient[k], Gradient(static_cast<float>(t))[k]));
      }
    }
    completed[t] = 1;
  }
}

TEST(GradientIntakeTest, RefusesTasksOutsideTheAssignmentOrSentTwice) {
  std::vector<char> completed(4, 0);
  for (int64_t t : {1, 4, -1}) {
    GradientIntake intake(2, 4, kSpecs, at::kFloat, false);
    auto outcome = intake.Add(Messages(t, Gradient(0))[0], completed);
    ASSERT_TRUE(outcome.refusal) << t;
    EXPECT_EQ(outcome.refusal->kind, Refusal::kMalformed);
    EXPECT_THAT(outcome.refusal->message, HasSubstr("outside the assignment's open tasks"));
  }
  GradientIntake intake(2, 4, kSpecs, at::kFloat, false);
  GradientIntake::Outcome last;
  for (const auto& m : Messages(2, Gradient(0))) last = intake.Add(m, completed);
  ASSERT_TRUE(last.task);
  completed[2] = 1;
  auto again = intake.Add(Messages(2, Gradient(0))[0], completed);
  ASSERT_TRUE(again.refusal);
  EXPECT_THAT(again.refusal->message, HasSubstr("outside the assignment's open tasks"));
}

// NOTE [Speculative duplicates]: a task another copy already delivered is read to its last
// chunk and dropped, including when the other copy finishes while its chunks arrive.
TEST(GradientIntakeTest, DropsTasksAnotherCopyDelivered) {
  std::vector<char> completed(4, 0);
  completed[2] = 1;
  GradientIntake intake(2, 4, kSpecs, at::kFloat, false);
  const auto messages = Messages(2, Gradient(0));
  for (size_t i = 0; i < messages.size(); ++i) {
    auto outcome = intake.Add(messages[i], completed);
    ASSERT_FALSE(outcome.refusal) << outcome.refusal->message;
    EXPECT_FALSE(outcome.task);
    EXPECT_EQ(outcome.redundant, i + 1 == messages.size());
  }
  const auto late = Messages(3, Gradient(1));
  ASSERT_FALSE(intake.Add(late[0], completed).refusal);
  completed[3] = 1;  // the other copy wins while task 3's chunks arrive
  GradientIntake::Outcome last;
  for (size_t i = 1; i < late.size(); ++i) last = intake.Add(late[i], completed);
  ASSERT_FALSE(last.refusal);
  EXPECT_FALSE(last.task);
  EXPECT_TRUE(last.redundant);
}

TEST(GradientIntakeTest, RefusesInterleavedTasksBadChunksAndNonFiniteMetrics) {
  std::vector<char> completed(4, 0);
  {
    GradientIntake intake(0, 4, kSpecs, at::kFloat, false);
    ASSERT_FALSE(intake.Add(Messages(0, Gradient(0))[0], completed).refusal);
    auto outcome = intake.Add(Messages(1, Gradient(0))[0], completed);
    ASSERT_TRUE(outcome.refusal);
    EXPECT_THAT(outcome.refusal->message, HasSubstr("interleaved with task 0"));
  }
  {
    GradientIntake intake(0, 4, kSpecs, at::kFloat, false);
    auto messages = Messages(0, Gradient(0));
    messages[0].mutable_chunk()->set_offset(4);
    auto outcome = intake.Add(messages[0], completed);
    ASSERT_TRUE(outcome.refusal);
    EXPECT_EQ(outcome.refusal->kind, Refusal::kMalformed);
    EXPECT_THAT(outcome.refusal->message, HasSubstr("task 0: tensor 0 (w): offset 4"));
  }
  // A NaN query loss always; a NaN accuracy only where accuracy means something.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (auto [classification, loss, accuracy, refused] :
       {std::tuple{false, nan, 0.5, true}, std::tuple{true, 0.5, nan, true},
        std::tuple{false, 0.5, nan, false}}) {
    GradientIntake intake(0, 4, kSpecs, at::kFloat, classification);
    GradientIntake::Outcome last;
    for (const auto& m : Messages(1, Gradient(0), loss, accuracy)) last = intake.Add(m, completed);
    EXPECT_EQ(last.refusal.has_value(), refused);
    EXPECT_EQ(last.task.has_value(), !refused);
    if (refused) {
      EXPECT_EQ(last.refusal->kind, Refusal::kNonFinite);
    }
  }
}

v1::AssignmentDone Metrics(const std::vector<int64_t>& tasks, double loss = 0.25) {
  v1::AssignmentDone done;
  for (int64_t t : tasks) {
    v1::TaskMetrics* m = done.add_metrics();
    m->set_task_index(t);
    m->set_loss_before(1.0);
    m->set_loss_after(loss);
    m->set_accuracy_before(0.2);
    m->set_accuracy_after(0.9);
  }
  return done;
}

TEST(CheckEvaluationMetricsTest, ReturnsOneSetPerTaskInTaskOrder) {
  auto outcome = CheckEvaluationMetrics(Metrics({5, 3, 4}), 3, 6, true);
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->message;
  ASSERT_EQ(outcome.metrics.size(), 3u);
  for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(outcome.metrics[i].task_index(), 3 + i);
}

TEST(CheckEvaluationMetricsTest, RefusesMissingDuplicateForeignAndNonFiniteMetrics) {
  struct Case {
    v1::AssignmentDone done;
    Refusal::Kind kind;
    const char* message;
  };
  const Case cases[] = {
      {Metrics({3, 4}), Refusal::kMalformed, "no metrics for task 5"},
      {Metrics({3, 4, 4, 5}), Refusal::kMalformed, "metrics for unexpected task 4"},
      {Metrics({3, 4, 6}), Refusal::kMalformed, "metrics for unexpected task 6"},
      {Metrics({3, 4, 5}, std::numeric_limits<double>::infinity()), Refusal::kNonFinite,
       "task 3: non-finite metrics"},
  };
  for (const Case& c : cases) {
    auto outcome = CheckEvaluationMetrics(c.done, 3, 6, true);
    ASSERT_TRUE(outcome.refusal) << c.message;
    EXPECT_EQ(outcome.refusal->kind, c.kind) << c.message;
    EXPECT_EQ(outcome.refusal->message, c.message);
    EXPECT_TRUE(outcome.metrics.empty());
  }
}

}  // namespace
}  // namespace metatrain::coordinator
