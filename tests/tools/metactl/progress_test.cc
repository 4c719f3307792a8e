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

}  // namespace
}  // namespace metatrain::metactl
