// The one training loop's rules, driven by a scripted GradientSource: which rounds it asks
// for, in what order it tells its observer, when it stops, how it resumes, and that it
// measures time only through its Clock.

#include "common/meta/training_loop.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/meta/job_spec.h"
#include "tests/testing/fake_clock.h"

namespace metatrain::meta {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

JobContext Context(const std::string& json) {
  auto spec = ParseJobSpec(json);
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto normalized = NormalizeJobSpec(*spec);
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  auto job = MakeJobContext(*normalized);
  EXPECT_TRUE(job.ok()) << job.status();
  return std::move(*job);
}

// Plain SGD with lr 1 on a sinusoid MLP: every task's gradient is 1 everywhere, so after s
// steps every parameter is init - s. Validation losses are scripted, one per validation.
class ScriptedSource final : public GradientSource {
 public:
  ScriptedSource(const JobContext& job, std::vector<double> validation_losses,
                 testing::FakeClock* clock = nullptr)
      : job_(job), validation_losses_(std::move(validation_losses)), clock_(clock) {}

  absl::StatusOr<TrainingRound> ComputeTraining(int64_t step, const TensorList& params) override {
    calls.push_back(absl::StrCat("train ", step));
    if (fail_at_step == step) return fail_with;
    if (clock_ != nullptr) clock_->Advance(absl::Milliseconds(500));
    TrainingRound round;
    for (int64_t t = 0; t < job_.spec.meta_batch_size(); ++t) {
      TensorList g;
      for (const auto& p : params) g.push_back(at::ones_like(p));
      round.group_gradients.push_back(std::move(g));
      round.query_loss.push_back(0.25 * (t + 1));
    }
    return round;
  }

  absl::StatusOr<EvaluationSummary> Evaluate(const EvaluationRequest& request,
                                             const TensorList& /*params*/) override {
    calls.push_back(absl::StrCat(request.split == Split::kTest ? "test" : "validate", " round ",
                                 request.round, " version ", request.version, " tasks ",
                                 request.num_tasks, " steps ", request.steps));
    if (request.split == Split::kValidation && request.round == fail_at_validation_round) {
      return fail_with;
    }
    EvaluationSummary summary;
    summary.loss_after.n = request.num_tasks;
    if (request.split == Split::kValidation) {
      summary.loss_after.mean = validation_losses_.at(validations_++);
    }
    return summary;
  }

  std::vector<std::string> calls;
  int64_t fail_at_step = -1;
  absl::Status fail_with = absl::CancelledError("job cancelled");
  // Evaluate of this validation round fails with `fail_with`.
  int64_t fail_at_validation_round = -1;

 private:
  const JobContext& job_;
  std::vector<double> validation_losses_;
  size_t validations_ = 0;
  testing::FakeClock* clock_;
};

class RecordingObserver final : public TrainingObserver {
 public:
  absl::Status OnStep(const StepReport& report) override {
    events.push_back(absl::StrCat("step ", report.step, report.validation ? " validated" : "",
                                  report.new_best ? " best" : "",
                                  report.stopped_early ? " stop" : ""));
    reports.push_back(report);
    return absl::OkStatus();
  }
  absl::Status OnNewBest(const TensorList&, int64_t step) override {
    events.push_back(absl::StrCat("best.pt ", step));
    return absl::OkStatus();
  }
  absl::Status OnResumePoint(const LoopState& state) override {
    events.push_back(absl::StrCat("resume ", state.step));
    states.push_back(state);
    return absl::OkStatus();
  }
  absl::Status OnTrainingEnd(const TensorList&, int64_t steps_run, const TensorList&,
                             int64_t best_step) override {
    events.push_back(absl::StrCat("end ", steps_run, " best ", best_step));
    return absl::OkStatus();
  }
  std::vector<std::string> events;
  std::vector<StepReport> reports;
  std::vector<LoopState> states;
};

constexpr char kSpec[] = R"({
  "algorithm": "fomaml", "tasks": {"family": "sinusoid", "shots": 5},
  "model": {"kind": "mlp", "hidden_sizes": [4]},
  "outer": {"kind": "sgd", "lr": 1.0}, "meta_batch_size": 2,
  "inner": {"steps": 1, "lr": 0.01, "test_steps": 3},
  "steps": 6, "validation_interval": 2, "validation_tasks": 7, "checkpoint_interval": 4,
  "test_tasks": 9, "seed": 1})";

TEST(TrainingLoopTest, AsksForEveryRoundAndTellsTheObserverInOrder) {
  JobContext job = Context(kSpec);
  // Validation after steps 2, 4, 6: better, worse, better.
  ScriptedSource source(job, {3.0, 4.0, 2.0});
  RecordingObserver observer;
  LoopOptions options;
  options.observer = &observer;
  auto result = RunTrainingLoop(job, source, std::move(options));
  ASSERT_TRUE(result.ok()) << result.status();

  EXPECT_THAT(source.calls,
              ElementsAre("train 0", "train 1", "validate round 2 version 2 tasks 7 steps 3",
                          "train 2", "train 3", "validate round 4 version 4 tasks 7 steps 3",
                          "train 4", "train 5", "validate round 6 version 6 tasks 7 steps 3",
                          "test round 0 version 6 tasks 9 steps 3"));
  EXPECT_THAT(observer.events,
              ElementsAre("resume 0", "step 1", "step 2 validated best", "best.pt 2", "step 3",
                          "step 4 validated", "resume 4", "step 5", "step 6 validated best",
                          "best.pt 6", "end 6 best 6", "resume 6"));
  EXPECT_EQ(result->steps_run, 6);
  EXPECT_EQ(result->best_step, 6);
  EXPECT_FALSE(result->stopped_early);
  EXPECT_EQ(result->test.loss_after.n, 9);
  // Mean of the per-task losses 0.25 and 0.5 in float32.
  EXPECT_EQ(observer.reports[0].train_loss, 0.375);
  EXPECT_EQ(observer.reports[0].train_accuracy, -1);
  auto init = InitialMetaParams(job);
  ASSERT_TRUE(init.ok());
  for (size_t i = 0; i < init->size(); ++i) {
    at::Tensor expected = (*init)[i];
    for (int step = 0; step < 6; ++step) expected = expected - 1;
    EXPECT_TRUE(at::equal(result->final_params[i], expected)) << i;
  }
  EXPECT_THAT(observer.states[1].validation_losses, ElementsAre(3.0, 4.0));
  EXPECT_EQ(observer.states[1].best_step, 2);
  EXPECT_FALSE(observer.states[1].optimizer_state.empty());
}

TEST(TrainingLoopTest, EarlyStoppingEndsTheRunAndTheBestIsMetaTested) {
  v1::JobSpec spec = Context(kSpec).spec;
  spec.set_early_stopping_patience(1);
  auto job = MakeJobContext(spec);
  ASSERT_TRUE(job.ok());
  ScriptedSource source(*job, {3.0, 4.0, 1.0});
  RecordingObserver observer;
  LoopOptions options;
  options.observer = &observer;
  auto result = RunTrainingLoop(*job, source, std::move(options));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->stopped_early);
  EXPECT_EQ(result->steps_run, 4);
  EXPECT_EQ(result->best_step, 2);
  EXPECT_EQ(source.calls.back(), "test round 0 version 2 tasks 9 steps 3");
  EXPECT_EQ(observer.events.back(), "resume 4");
  EXPECT_EQ(observer.reports.back().stopped_early, true);
}

TEST(TrainingLoopTest, WithoutValidationTheFinalParametersAreTheBest) {
  v1::JobSpec spec = Context(kSpec).spec;
  spec.set_validation_interval(0);
  auto job = MakeJobContext(spec);
  ASSERT_TRUE(job.ok());
  ScriptedSource source(*job, {});
  auto result = RunTrainingLoop(*job, source, LoopOptions());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->best_step, 6);
  EXPECT_EQ(source.calls.back(), "test round 0 version 6 tasks 9 steps 3");
  for (size_t i = 0; i < result->best_params.size(); ++i) {
    EXPECT_TRUE(at::equal(result->best_params[i], result->final_params[i]));
  }
}

TEST(TrainingLoopTest, ASourceErrorEndsTheRunWithThatError) {
  JobContext job = Context(kSpec);
  ScriptedSource source(job, {3.0, 4.0, 2.0});
  source.fail_at_step = 3;
  RecordingObserver observer;
  LoopOptions options;
  options.observer = &observer;
  auto result = RunTrainingLoop(job, source, std::move(options));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(observer.reports.size(), 3u);
  EXPECT_EQ(observer.events.back(), "step 3");
}

TEST(TrainingLoopTest, ResumesFromASavedStateExactly) {
  JobContext job = Context(kSpec);
  ScriptedSource full_source(job, {3.0, 4.0, 2.0});
  RecordingObserver full;
  LoopOptions options;
  options.observer = &full;
  auto uninterrupted = RunTrainingLoop(job, full_source, std::move(options));
  ASSERT_TRUE(uninterrupted.ok());

  // Continue from the resume point after step 4, with the validations still to come.
  ScriptedSource rest_source(job, {2.0});
  RecordingObserver rest;
  LoopOptions resumed;
  resumed.resume = full.states[1];
  resumed.observer = &rest;
  auto result = RunTrainingLoop(job, rest_source, std::move(resumed));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(rest_source.calls.front(), "train 4");
  EXPECT_THAT(rest.events, ElementsAreArray(std::vector<std::string>(full.events.begin() + 7,
                                                                     full.events.end())));
  for (size_t i = 0; i < result->final_params.size(); ++i) {
    EXPECT_TRUE(at::equal(result->final_params[i], uninterrupted->final_params[i]));
  }
}

TEST(TrainingLoopTest, ResumeRankingByAccuracyNeedsEveryAccuracy) {
  v1::JobSpec spec = Context(kSpec).spec;
  spec.set_select_best_by("accuracy");
  spec.mutable_tasks()->set_family("synthetic_images");
  spec.mutable_tasks()->set_ways(2);
  spec.mutable_tasks()->set_image_size(8);
  auto normalized = NormalizeJobSpec(spec);
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  auto job = MakeJobContext(*normalized);
  ASSERT_TRUE(job.ok()) << job.status();
  LoopState state;
  state.step = 2;
  auto init = InitialMetaParams(*job);
  ASSERT_TRUE(init.ok());
  state.params = *init;
  auto optimizer = MakeOuterOptimizer(job->spec.outer(), job->learner->meta_param_specs());
  ASSERT_TRUE(optimizer.ok());
  state.optimizer_state = (*optimizer)->State();
  state.validation_losses = {1.0};
  ScriptedSource source(*job, {});
  LoopOptions options;
  options.resume = state;
  auto result = RunTrainingLoop(*job, source, std::move(options));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("1 validation losses but 0"));
  EXPECT_TRUE(source.calls.empty());
}

TEST(TrainingLoopTest, MeasuresThroughputWithItsClock) {
  JobContext job = Context(kSpec);
  testing::FakeClock clock;
  ScriptedSource source(job, {3.0, 4.0, 2.0}, &clock);
  RecordingObserver observer;
  LoopOptions options;
  options.observer = &observer;
  options.clock = &clock;
  ASSERT_TRUE(RunTrainingLoop(job, source, std::move(options)).ok());
  // Two tasks per step, half a (fake) second each step.
  for (const auto& report : observer.reports) EXPECT_EQ(report.tasks_per_second, 4.0);
}

TEST(TrainingLoopTest, ResumePointsByTimeFollowTheClock) {
  JobContext job = Context(R"({
    "algorithm": "fomaml", "tasks": {"family": "sinusoid", "shots": 5},
    "model": {"kind": "mlp", "hidden_sizes": [4]}, "outer": {"kind": "sgd", "lr": 1.0},
    "meta_batch_size": 2, "steps": 6, "validation_interval": 0,
    "checkpoint_interval_seconds": 1, "test_tasks": 3, "seed": 1})");
  testing::FakeClock clock;
  ScriptedSource source(job, {}, &clock);  // half a second per step
  RecordingObserver observer;
  LoopOptions options;
  options.observer = &observer;
  options.clock = &clock;
  ASSERT_TRUE(RunTrainingLoop(job, source, std::move(options)).ok());
  std::vector<int64_t> resume_steps;
  for (const auto& state : observer.states) resume_steps.push_back(state.step);
  EXPECT_THAT(resume_steps, ElementsAre(0, 2, 4, 6, 6));
}

TEST(TrainingLoopTest, DefaultTimeCheckpointsAreFiveMinutesApart) {
  EXPECT_EQ(Context(kSpec).spec.checkpoint_interval_seconds(), 300);
  auto bad = ParseJobSpec(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
                               "checkpoint_interval_seconds": -2})");
  ASSERT_TRUE(bad.ok());
  auto normalized = NormalizeJobSpec(*bad);
  EXPECT_EQ(normalized.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(normalized.status().message(), HasSubstr("checkpoint_interval_seconds"));
}

TEST(TrainingLoopTest, AStopBetweenStepsLeavesAResumePointOfTheLastStep) {
  JobContext job = Context(kSpec);  // resume points every 4 steps
  ScriptedSource source(job, {3.0, 4.0, 2.0});
  source.fail_at_step = 3;  // steps 0-2 are done
  source.fail_with = absl::AbortedError("coordinator shutting down");
  RecordingObserver observer;
  LoopOptions options;
  options.observer = &observer;
  auto result = RunTrainingLoop(job, source, std::move(options));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted);
  ASSERT_FALSE(observer.states.empty());
  EXPECT_EQ(observer.states.back().step, 3);
  // Exactly the state after 3 steps of SGD with unit gradients: init - 1 - 1 - 1.
  auto init = InitialMetaParams(job);
  ASSERT_TRUE(init.ok());
  for (size_t i = 0; i < init->size(); ++i) {
    EXPECT_TRUE(at::equal(observer.states.back().params[i], (*init)[i] - 1 - 1 - 1)) << i;
  }
  // A cancel is not a stop: nothing to resume.
  ScriptedSource cancelled(job, {3.0, 4.0, 2.0});
  cancelled.fail_at_step = 3;
  RecordingObserver cancel_observer;
  LoopOptions cancel_options;
  cancel_options.observer = &cancel_observer;
  EXPECT_EQ(RunTrainingLoop(job, cancelled, std::move(cancel_options)).status().code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(cancel_observer.states.back().step, 0);
}

TEST(TrainingLoopTest, AStopDuringAValidationKeepsTheLastResumePoint) {
  JobContext job = Context(kSpec);  // validations after steps 2, 4, 6; resume points every 4
  ScriptedSource source(job, {3.0, 4.0, 2.0});
  source.fail_at_validation_round = 6;  // the parameters are already those of step 6
  source.fail_with = absl::AbortedError("coordinator shutting down");
  RecordingObserver observer;
  LoopOptions options;
  options.observer = &observer;
  EXPECT_EQ(RunTrainingLoop(job, source, std::move(options)).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(observer.states.back().step, 4);
}

}  // namespace
}  // namespace metatrain::meta
