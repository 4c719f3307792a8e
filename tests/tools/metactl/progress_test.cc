#include "tools/metactl/progress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace metatrain::metactl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::JobStatus Running() {
  v1::JobStatus s;
  s.set_job_id("job-3");
  s.set_state(v1::RUNNING);
  s.set_step(250);
  s.set_total_steps(1000);
  s.set_train_loss(0.53214);
  s.set_train_accuracy(-1);
  s.set_tasks_per_second(500);
  s.set_workers(2);
  s.mutable_spec()->set_meta_batch_size(25);
  return s;
}

TEST(ProgressTest, LineShowsStepBarLossRateAndEta) {
  const std::string line = FormatProgress(Running(), 20);
  EXPECT_THAT(line, HasSubstr("step 250/1000"));
  EXPECT_THAT(line, HasSubstr("[#####...............]"));
  EXPECT_THAT(line, HasSubstr(" 25%"));
  EXPECT_THAT(line, HasSubstr("loss 0.5321"));
  EXPECT_THAT(line, Not(HasSubstr("acc")));  // regression
  EXPECT_THAT(line, HasSubstr("500 tasks/s"));
  // 750 steps * 25 tasks / 500 tasks/s = 37.5 s
  EXPECT_THAT(line, HasSubstr("ETA 38s"));
}

TEST(ProgressTest, PlainLineHasNoBarAndClassificationShowsAccuracy) {
  v1::JobStatus s = Running();
  s.set_train_accuracy(0.4567);
  const std::string line = FormatProgress(s, 0);
  EXPECT_THAT(line, Not(HasSubstr("[")));
  EXPECT_THAT(line, HasSubstr("acc 45.7%"));
}

TEST(ProgressTest, EvaluationShowsMeanAndCiBeforeAndAfter) {
  v1::EvaluationResult r;
  r.mutable_loss_before()->set_mean(2.5);
  r.mutable_loss_before()->set_ci95(0.25);
  r.mutable_loss_before()->set_n(600);
  r.mutable_loss_after()->set_mean(0.125);
  r.mutable_loss_after()->set_ci95(0.0125);
  r.mutable_loss_after()->set_n(600);
  std::string text = FormatEvaluation(r, "  ");
  EXPECT_THAT(text, HasSubstr("before 2.5000 ± 0.2500"));
  EXPECT_THAT(text, HasSubstr("after 0.1250 ± 0.0125"));
  EXPECT_THAT(text, Not(HasSubstr("accuracy")));
  r.mutable_accuracy_after()->set_mean(0.481);
  r.mutable_accuracy_after()->set_ci95(0.012);
  r.mutable_accuracy_after()->set_n(600);
  text = FormatEvaluation(r, "");
  EXPECT_THAT(text, HasSubstr("after 48.10% ± 1.20%"));
}

TEST(ProgressTest, DurationsAndStates) {
  EXPECT_EQ(FormatDuration(45), "45s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_TRUE(IsTerminal(v1::CANCELLED));
  EXPECT_FALSE(IsTerminal(v1::RUNNING));
  EXPECT_EQ(StateName(v1::SUCCEEDED), "SUCCEEDED");
}

TEST(ProgressTest, TableListsEveryJob) {
  v1::ListJobsResponse jobs;
  *jobs.add_jobs() = Running();
  jobs.mutable_jobs(0)->mutable_spec()->set_name("sinusoid");
  const std::string table = FormatJobTable(jobs);
  EXPECT_THAT(table, HasSubstr("JOB"));
  EXPECT_THAT(table, HasSubstr("job-3"));
  EXPECT_THAT(table, HasSubstr("sinusoid"));
  EXPECT_THAT(table, HasSubstr("250/1000"));
}

TEST(ProgressTest, TaskSettingNamesSplitWaysAndShots) {
  v1::JobSpec spec;
  spec.mutable_tasks()->set_family("omniglot");
  spec.mutable_tasks()->set_split("background_evaluation");
  spec.mutable_tasks()->set_ways(20);
  spec.mutable_tasks()->set_shots(5);
  spec.mutable_tasks()->set_query_size(15);
  EXPECT_EQ(FormatTaskSetting(spec),
            "omniglot, split background_evaluation, 20-way 5-shot, 15 query per class");
  v1::JobStatus status;
  *status.mutable_spec() = spec;
  EXPECT_THAT(FormatStatus(status), HasSubstr("split background_evaluation"));

  v1::JobSpec sinusoid;
  sinusoid.mutable_tasks()->set_family("sinusoid");
  sinusoid.mutable_tasks()->set_shots(5);
  sinusoid.mutable_tasks()->set_query_size(10);
  EXPECT_EQ(FormatTaskSetting(sinusoid), "sinusoid, K = 5, 10 query points");
}

TEST(ProgressTest, BestValidationNamesTheSelectionMetric) {
  v1::JobStatus status;
  EXPECT_EQ(FormatBestValidation(status), "");  // nothing validated yet
  status.set_best_step(1500);
  status.mutable_best_validation()->mutable_loss_after()->set_n(100);
  status.mutable_best_validation()->mutable_accuracy_after()->set_mean(0.9);
  status.mutable_best_validation()->mutable_accuracy_after()->set_n(100);
  EXPECT_THAT(FormatBestValidation(status), HasSubstr("best validation (step 1500, by loss)"));
  status.mutable_spec()->set_select_best_by("accuracy");
  EXPECT_THAT(FormatBestValidation(status), HasSubstr("best validation (step 1500, by accuracy)"));
  EXPECT_THAT(FormatStatus(status), HasSubstr("by accuracy"));
}

TEST(ProgressTest, HistoryCsvHasOneRowPerValidation) {
  v1::JobStatus status;
  for (int step : {500, 1000}) {
    v1::ValidationPoint* point = status.add_validation_history();
    point->set_step(step);
    v1::EvaluationResult* r = point->mutable_result();
    r->mutable_loss_before()->set_mean(1.6);
    r->mutable_loss_after()->set_mean(step == 500 ? 0.75 : 0.5);
    r->mutable_loss_after()->set_ci95(0.05);
    r->mutable_accuracy_after()->set_n(100);
    r->mutable_accuracy_before()->set_mean(0.2);
    r->mutable_accuracy_after()->set_mean(step == 500 ? 0.7 : 0.8);
    r->mutable_accuracy_after()->set_ci95(0.025);
  }
  EXPECT_EQ(FormatHistoryCsv(status),
            "step,loss_before,loss_after,loss_after_ci95,accuracy_before,accuracy_after,"
            "accuracy_after_ci95\n"
            "500,1.6,0.75,0.05,0.2,0.7,0.025\n"
            "1000,1.6,0.5,0.05,0.2,0.8,0.025\n");
}

}  // namespace
}  // namespace metatrain::metactl
