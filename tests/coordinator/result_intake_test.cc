#include "coordinator/result_intake.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

namespace metatrain::coordinator {
namespace {

using ::testing::HasSubstr;

const std::vector<meta::ParamSpec> kSpecs = {{"w", {2, 3}, false}, {"b", {2}, true}};

meta::TensorList Gradient(float start) {
  return {at::arange(6, at::kFloat).add(start).reshape({2, 3}), at::arange(2, at::kFloat)};
}

// The messages a worker sends for the gradient of the group of `count` tasks from `t`, in
// chunks of at most 8 bytes, with `loss` and `accuracy` for each task on the last one.
std::vector<v1::TaskGradient> Messages(int64_t t, const meta::TensorList& gradient,
                                       double loss = 0.5, double accuracy = 0.75,
                                       int64_t count = 1) {
  auto chunks = rpc::EncodeTensors(gradient, kSpecs, 8);
  EXPECT_TRUE(chunks.ok()) << chunks.status();
  std::vector<v1::TaskGradient> out;
  for (size_t i = 0; i < chunks->size(); ++i) {
    v1::TaskGradient g;
    g.set_task_index(t);
    g.set_task_count(count);
    *g.mutable_chunk() = (*chunks)[i];
    g.set_last(i + 1 == chunks->size());
    for (int64_t k = 0; g.last() && k < count; ++k) {
      g.add_query_loss(loss + k);
      g.add_query_accuracy(accuracy);
    }
    out.push_back(g);
  }
  return out;
}

// An intake of tasks (groups of one) [begin, end) of a 4-task round.
GradientIntake TaskIntake(int64_t begin, int64_t end, bool classification) {
  return GradientIntake(begin, end, /*group_size=*/1, /*num_tasks=*/4, kSpecs, at::kFloat,
                        classification);
}

TEST(GradientIntakeTest, AcceptsEachTaskOnceItsLastChunkArrives) {
  GradientIntake intake = TaskIntake(2, 4, /*classification=*/true);
  std::vector<char> completed(4, 0);
  for (int64_t t : {3, 2}) {
    const auto messages = Messages(t, Gradient(static_cast<float>(t)));
    ASSERT_GT(messages.size(), 2u);
    for (size_t i = 0; i < messages.size(); ++i) {
      auto outcome = intake.Add(messages[i], completed);
      ASSERT_FALSE(outcome.refusal) << outcome.refusal->message;
      if (i + 1 < messages.size()) {
        ASSERT_FALSE(outcome.group) << i;
        continue;
      }
      ASSERT_TRUE(outcome.group);
      EXPECT_EQ(outcome.group->index, t);
      EXPECT_EQ(outcome.group->query_loss, std::vector<double>{0.5});
      EXPECT_EQ(outcome.group->query_accuracy, std::vector<double>{0.75});
      ASSERT_EQ(outcome.group->gradient.size(), 2u);
      for (size_t k = 0; k < 2; ++k) {
        EXPECT_TRUE(at::equal(outcome.group->gradient[k], Gradient(static_cast<float>(t))[k]));
      }
    }
    completed[t] = 1;
  }
}

TEST(GradientIntakeTest, RefusesTasksOutsideTheAssignmentOrSentTwice) {
  std::vector<char> completed(4, 0);
  for (int64_t t : {1, 4, -1}) {
    GradientIntake intake = TaskIntake(2, 4, false);
    auto outcome = intake.Add(Messages(t, Gradient(0))[0], completed);
    ASSERT_TRUE(outcome.refusal) << t;
    EXPECT_EQ(outcome.refusal->kind, Refusal::kMalformed);
    EXPECT_THAT(outcome.refusal->message, HasSubstr("outside the assignment's open tasks"));
  }
  GradientIntake intake = TaskIntake(2, 4, false);
  GradientIntake::Outcome last;
  for (const auto& m : Messages(2, Gradient(0))) last = intake.Add(m, completed);
  ASSERT_TRUE(last.group);
  completed[2] = 1;
  auto again = intake.Add(Messages(2, Gradient(0))[0], completed);
  ASSERT_TRUE(again.refusal);
  EXPECT_THAT(again.refusal->message, HasSubstr("outside the assignment's open tasks"));
}

// NOTE [Gradient groups]: groups of 3 in an 8-task round are [0, 3), [3, 6), [6, 8); an
// assignment of groups [1, 3) takes exactly those two sums, each with its tasks' metrics.
TEST(GradientIntakeTest, AcceptsWholeGradientGroupsOnly) {
  std::vector<char> completed(3, 0);
  auto intake = [] {
    return GradientIntake(1, 3, /*group_size=*/3, /*num_tasks=*/8, kSpecs, at::kFloat, true);
  };
  {
    GradientIntake whole = intake();
    for (auto [first, count, group] : {std::tuple{6, 2, 2}, std::tuple{3, 3, 1}}) {
      GradientIntake::Outcome last;
      for (const auto& m : Messages(first, Gradient(1), 0.5, 0.75, count)) {
        last = whole.Add(m, completed);
        ASSERT_FALSE(last.refusal) << last.refusal->message;
      }
      ASSERT_TRUE(last.group) << first;
      EXPECT_EQ(last.group->index, group);
      EXPECT_EQ(last.group->query_loss.size(), static_cast<size_t>(count));
      EXPECT_EQ(last.group->query_loss.back(), 0.5 + count - 1);
      EXPECT_EQ(last.group->query_accuracy, std::vector<double>(count, 0.75));
      completed[group] = 1;
    }
  }
  completed.assign(3, 0);
  struct Case {
    int64_t first, count;
    const char* message;
  };
  const Case cases[] = {
      {4, 2, "gradient for task 4 outside the assignment's open gradient groups"},
      {0, 3, "gradient for task 0 outside the assignment's open gradient groups"},
      {3, 2, "gradient of tasks [3, 5): the gradient group is [3, 6)"},
      {6, 3, "gradient of tasks [6, 9): the gradient group is [6, 8)"},
  };
  for (const Case& c : cases) {
    GradientIntake refusing = intake();
    auto outcome = refusing.Add(Messages(c.first, Gradient(0), 0.5, 0.75, c.count)[0], completed);
    ASSERT_TRUE(outcome.refusal) << c.message;
    EXPECT_EQ(outcome.refusal->message, c.message);
  }
  // The right group, but one task's metrics missing.
  GradientIntake refusing = intake();
  auto messages = Messages(3, Gradient(0), 0.5, 0.75, 3);
  messages.back().mutable_query_loss()->RemoveLast();
  GradientIntake::Outcome last;
  for (const auto& m : messages) last = refusing.Add(m, completed);
  ASSERT_TRUE(last.refusal);
  EXPECT_THAT(last.refusal->message, HasSubstr("2 query losses and 3 accuracies for 3 task(s)"));
}

// NOTE [Speculative duplicates]: a task another copy already delivered is read to its last
// chunk and dropped, including when the other copy finishes while its chunks arrive.
TEST(GradientIntakeTest, DropsTasksAnotherCopyDelivered) {
  std::vector<char> completed(4, 0);
  completed[2] = 1;
  GradientIntake intake = TaskIntake(2, 4, false);
  const auto messages = Messages(2, Gradient(0));
  for (size_t i = 0; i < messages.size(); ++i) {
    auto outcome = intake.Add(messages[i], completed);
    ASSERT_FALSE(outcome.refusal) << outcome.refusal->message;
    EXPECT_FALSE(outcome.group);
    EXPECT_EQ(outcome.redundant, i + 1 == messages.size());
  }
  const auto late = Messages(3, Gradient(1));
  ASSERT_FALSE(intake.Add(late[0], completed).refusal);
  completed[3] = 1;  // the other copy wins while task 3's chunks arrive
  GradientIntake::Outcome last;
  for (size_t i = 1; i < late.size(); ++i) last = intake.Add(late[i], completed);
  ASSERT_FALSE(last.refusal);
  EXPECT_FALSE(last.group);
  EXPECT_TRUE(last.redundant);
}

TEST(GradientIntakeTest, RefusesInterleavedTasksBadChunksAndNonFiniteMetrics) {
  std::vector<char> completed(4, 0);
  {
    GradientIntake intake = TaskIntake(0, 4, false);
    ASSERT_FALSE(intake.Add(Messages(0, Gradient(0))[0], completed).refusal);
    auto outcome = intake.Add(Messages(1, Gradient(0))[0], completed);
    ASSERT_TRUE(outcome.refusal);
    EXPECT_THAT(outcome.refusal->message, HasSubstr("interleaved with task 0"));
  }
  {
    GradientIntake intake = TaskIntake(0, 4, false);
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
    GradientIntake intake = TaskIntake(0, 4, classification);
    GradientIntake::Outcome last;
    for (const auto& m : Messages(1, Gradient(0), loss, accuracy)) last = intake.Add(m, completed);
    EXPECT_EQ(last.refusal.has_value(), refused);
    EXPECT_EQ(last.group.has_value(), !refused);
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

TEST(RoutingAssignmentIdTest, OneAssignmentPerMessageOrNothing) {
  v1::WorkerMessage gradient;
  gradient.mutable_gradient()->set_assignment_id(11);
  EXPECT_EQ(RoutingAssignmentId(gradient), 11);
  v1::WorkerMessage done;
  done.mutable_done()->set_assignment_id(12);
  EXPECT_EQ(RoutingAssignmentId(done), 12);
  v1::WorkerMessage batch;
  for (int i = 0; i < 3; ++i) batch.mutable_gradients()->add_gradients()->set_assignment_id(13);
  EXPECT_EQ(RoutingAssignmentId(batch), 13);
  // A batch naming two assignments is malformed, wherever the stray one sits.
  for (int stray = 0; stray < 3; ++stray) {
    v1::WorkerMessage mixed = batch;
    mixed.mutable_gradients()->mutable_gradients(stray)->set_assignment_id(14);
    EXPECT_EQ(RoutingAssignmentId(mixed), std::nullopt) << "stray at " << stray;
  }
  v1::WorkerMessage empty;
  empty.mutable_gradients();
  EXPECT_EQ(RoutingAssignmentId(empty), std::nullopt);
  EXPECT_EQ(RoutingAssignmentId(v1::WorkerMessage()), std::nullopt);
}

}  // namespace
}  // namespace metatrain::coordinator
