// The coordinator's Prometheus series: what a step, a checkpoint and a job's life record,
// series retention on a hand-driven clock, and the series of a real job trained by two
// workers over gRPC.

#include "coordinator/coordinator_metrics.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <optional>
#include <string>

#include "tests/coordinator/test_specs.h"
#include "tests/testing/coordinator_harness.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/in_process_worker.h"
#include "tests/testing/metric_values.h"

namespace metatrain::coordinator {
namespace {

using testing::FakeClock;
using testing::MetricValue;
using testing::SeriesCount;

meta::StepReport ClassificationStep(int64_t step, bool validated) {
  meta::StepReport report;
  report.step = step;
  report.train_loss = 1.5;
  report.train_accuracy = 0.4;
  report.lr = 0.001;
  report.tasks_per_second = 12;
  report.timings.training_round = absl::Milliseconds(30);
  report.timings.aggregate = absl::Milliseconds(2);
  report.timings.optimizer = absl::Milliseconds(1);
  if (validated) {
    meta::EvaluationSummary v;
    v.loss_before.mean = 1.6;
    v.loss_after.mean = 1.1;
    v.accuracy_before.mean = 0.33;
    v.accuracy_before.n = 5;
    v.accuracy_after.mean = 0.6;
    v.accuracy_after.n = 5;
    report.validation = v;
    report.new_best = true;
    report.timings.validation = absl::Milliseconds(20);
  }
  return report;
}

TEST(CoordinatorMetricsTest, StepSetsTheJobGaugesAndObservesEachPhase) {
  FakeClock clock;
  CoordinatorMetrics metrics(absl::Minutes(10), &clock);
  JobMetrics& job = metrics.Job("job-000001");
  RoundTimings round;
  round.dispatch = absl::Milliseconds(3);
  round.wait_workers = absl::Milliseconds(25);
  round.decode = absl::Milliseconds(2);
  round.worker_finish = {{"w-a", absl::Milliseconds(20)}, {"w-b", absl::Milliseconds(28)}};
  job.RecordStep(ClassificationStep(1, /*validated=*/true), round);

  const auto families = metrics.Collect();
  const std::map<std::string, std::string> id{{"job_id", "job-000001"}};
  EXPECT_EQ(MetricValue(families, "metatrain_job_meta_steps_completed", id), 1);
  EXPECT_EQ(MetricValue(families, "metatrain_job_train_loss", id), 1.5);
  EXPECT_EQ(MetricValue(families, "metatrain_job_train_accuracy", id), 0.4);
  EXPECT_EQ(MetricValue(families, "metatrain_job_learning_rate", id), 0.001);
  EXPECT_EQ(MetricValue(families, "metatrain_job_validation_loss_before_adaptation", id), 1.6);
  EXPECT_EQ(MetricValue(families, "metatrain_job_validation_loss_after_adaptation", id), 1.1);
  EXPECT_EQ(MetricValue(families, "metatrain_job_validation_accuracy_before_adaptation", id), 0.33);
  EXPECT_EQ(MetricValue(families, "metatrain_job_validation_accuracy_after_adaptation", id), 0.6);
  EXPECT_EQ(MetricValue(families, "metatrain_job_best_validation_accuracy", id), 0.6);
  EXPECT_EQ(MetricValue(families, "metatrain_job_best_step", id), 1);
  for (const char* phase :
       {"dispatch", "wait_workers", "decode", "aggregate", "optimizer", "validation"}) {
    EXPECT_EQ(MetricValue(families, "metatrain_job_step_phase_seconds",
                          {{"job_id", "job-000001"}, {"phase", phase}}),
              1)
        << phase;
  }
  EXPECT_EQ(MetricValue(families, "metatrain_job_step_phase_seconds",
                        {{"job_id", "job-000001"}, {"phase", "checkpoint"}}),
            0);
  EXPECT_EQ(MetricValue(families, "metatrain_job_step_seconds", id), 1);
  EXPECT_DOUBLE_EQ(*MetricValue(families, "metatrain_job_step_worker_seconds",
                                {{"job_id", "job-000001"}, {"worker", "w-b"}}),
                   0.028);

  // A step without validation leaves the validation phase alone; a worker that took no
  // part in the step no longer shows as one of its workers.
  round.worker_finish = {{"w-a", absl::Milliseconds(21)}};
  job.RecordStep(ClassificationStep(2, /*validated=*/false), round);
  const auto after = metrics.Collect();
  EXPECT_EQ(MetricValue(after, "metatrain_job_step_phase_seconds",
                        {{"job_id", "job-000001"}, {"phase", "validation"}}),
            1);
  EXPECT_EQ(MetricValue(after, "metatrain_job_step_phase_seconds",
                        {{"job_id", "job-000001"}, {"phase", "optimizer"}}),
            2);
  EXPECT_EQ(SeriesCount(after, "metatrain_job_step_worker_seconds", id), 1);
  EXPECT_EQ(MetricValue(after, "metatrain_job_best_step", id), 1);
}

TEST(CoordinatorMetricsTest, RegressionJobHasNoAccuracySeries) {
  FakeClock clock;
  CoordinatorMetrics metrics(absl::Minutes(10), &clock);
  meta::StepReport report;
  report.step = 1;
  report.train_loss = 2;
  meta::EvaluationSummary v;  // accuracy n == 0: regression
  v.loss_after.mean = 1;
  report.validation = v;
  report.new_best = true;
  metrics.Job("job-000002").RecordStep(report, RoundTimings());
  const auto families = metrics.Collect();
  EXPECT_EQ(SeriesCount(families, "metatrain_job_train_accuracy"), 0);
  EXPECT_EQ(SeriesCount(families, "metatrain_job_validation_accuracy_after_adaptation"), 0);
  EXPECT_EQ(SeriesCount(families, "metatrain_job_best_validation_accuracy"), 0);
  EXPECT_EQ(MetricValue(families, "metatrain_job_best_validation_loss"), 1);
}

TEST(CoordinatorMetricsTest, FinishedJobSeriesStayForTheRetentionThenGo) {
  FakeClock clock;
  CoordinatorMetrics metrics(absl::Minutes(10), &clock);
  JobMetrics& job = metrics.Job("job-000003");
  job.SetState(v1::RUNNING);
  job.RecordCheckpoint(1234, absl::Milliseconds(5));
  job.SetState(v1::SUCCEEDED);
  metrics.RetireJob("job-000003");
  const std::map<std::string, std::string> id{{"job_id", "job-000003"}};

  clock.Advance(absl::Minutes(9));
  auto families = metrics.Collect();
  EXPECT_EQ(MetricValue(families, "metatrain_job_state",
                        {{"job_id", "job-000003"}, {"state", "SUCCEEDED"}}),
            1);
  EXPECT_EQ(MetricValue(families, "metatrain_job_state",
                        {{"job_id", "job-000003"}, {"state", "RUNNING"}}),
            0);
  EXPECT_EQ(MetricValue(families, "metatrain_job_checkpoint_bytes", id), 1234);

  clock.Advance(absl::Minutes(2));
  families = metrics.Collect();
  for (const auto& family : families) {
    EXPECT_EQ(SeriesCount(families, family.name, id), 0) << family.name;
  }
  // The service-wide series are not a job's: they stay.
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_rejected_results_total",
                        {{"reason", "non_finite"}}),
            0);
}

TEST(CoordinatorMetricsTest, DepartedWorkerLatencySeriesGoAfterTheRetentionUnlessItReturns) {
  FakeClock clock;
  CoordinatorMetrics metrics(absl::Minutes(1), &clock);
  metrics.WorkerTaskLatency("host:1", absl::Milliseconds(40), 4);
  metrics.WorkerTaskLatency("host:2", absl::Milliseconds(40), 4);
  metrics.RetireWorker("host:1");
  metrics.RetireWorker("host:2");
  metrics.WorkerTaskLatency("host:2", absl::Milliseconds(40), 4);  // it came back
  clock.Advance(absl::Minutes(2));
  const auto families = metrics.Collect();
  EXPECT_EQ(
      SeriesCount(families, "metatrain_coordinator_worker_task_seconds", {{"worker", "host:1"}}),
      0);
  EXPECT_EQ(
      MetricValue(families, "metatrain_coordinator_worker_task_seconds", {{"worker", "host:2"}}),
      2);
}

TEST(CoordinatorMetricsTest, ReasonsExistAtZeroAndCountSeparately) {
  CoordinatorMetrics metrics(absl::Minutes(1), nullptr);
  metrics.ResultRejected(RejectReason::kNonFinite);
  metrics.TasksReassigned(ReassignReason::kDeadline, 3);
  const auto families = metrics.Collect();
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_rejected_results_total",
                        {{"reason", "non_finite"}}),
            1);
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_rejected_results_total",
                        {{"reason", "malformed"}}),
            0);
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_reassigned_tasks_total",
                        {{"reason", "deadline"}}),
            3);
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_reassigned_tasks_total",
                        {{"reason", "worker_lost"}}),
            0);
  EXPECT_EQ(metrics.rejected_results(), 1);
  EXPECT_EQ(metrics.reassigned_tasks(), 3);
}

// A real job over gRPC: 3 steps of 4 tasks, 5 validation tasks after every step, a meta-test
// of 5 tasks, checkpoints on disk.
TEST(CoordinatorMetricsTest, TrainedJobRecordsItsWholeLife) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("metrics_test_" + std::to_string(::getpid())))
          .string();
  std::filesystem::remove_all(dir);
  CoordinatorOptions options;
  options.checkpoint_dir = dir;
  options.poll_interval = absl::Milliseconds(20);
  auto h = testing::CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  testing::InProcessWorker a((*h)->address(), 2, "worker-a"), b((*h)->address(), 2, "worker-b");
  v1::JobSpec spec = testing::SmallImageSpec(/*steps=*/3, /*seed=*/7);
  spec.set_validation_tasks(5);
  spec.set_checkpoint_interval(1);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();
  auto events = (*h)->WatchToEnd(*id);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->back().status().state(), v1::SUCCEEDED) << events->back().status().error();

  const auto families = (*h)->coordinator().metrics().Collect();
  const std::map<std::string, std::string> job{{"job_id", *id}};
  EXPECT_EQ(MetricValue(families, "metatrain_job_state", {{"job_id", *id}, {"state", "SUCCEEDED"}}),
            1);
  EXPECT_EQ(MetricValue(families, "metatrain_job_meta_steps_completed", job), 3);
  EXPECT_EQ(MetricValue(families, "metatrain_job_meta_steps_planned", job), 3);
  EXPECT_EQ(MetricValue(families, "metatrain_job_tasks_completed_total", job), 3 * 4 + 3 * 5 + 5);
  EXPECT_EQ(MetricValue(families, "metatrain_job_step_seconds", job), 3);
  EXPECT_EQ(MetricValue(families, "metatrain_job_step_phase_seconds",
                        {{"job_id", *id}, {"phase", "validation"}}),
            3);
  // Queued: best.pt at each new best, resume.pt at the start and every step, then final.pt,
  // best.pt and resume.pt. Written: as many, less the resume.pt a newer one replaced while
  // it waited for the writer, but at least the three of the end.
  const std::optional<double> queued = MetricValue(families, "metatrain_job_step_phase_seconds",
                                                   {{"job_id", *id}, {"phase", "checkpoint"}});
  ASSERT_TRUE(queued.has_value());
  EXPECT_GE(*queued, 1 + 3 + 3);
  const std::optional<double> written =
      MetricValue(families, "metatrain_job_checkpoint_write_seconds", job);
  ASSERT_TRUE(written.has_value());
  EXPECT_GE(*written, 3);
  EXPECT_LE(*written, *queued);
  EXPECT_GT(*MetricValue(families, "metatrain_job_checkpoint_bytes", job), 0);
  // One series per worker that finished an assignment of the last step: both, or one when
  // it copied the other's open tasks and won (NOTE [Speculative duplicates]).
  const int step_workers = SeriesCount(families, "metatrain_job_step_worker_seconds", job);
  EXPECT_GE(step_workers, 1);
  EXPECT_LE(step_workers, 2);
  EXPECT_GT(*MetricValue(families, "metatrain_job_train_accuracy", job), 0);

  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_workers", {{"device", "cpu"}}), 2);
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_jobs", {{"state", "SUCCEEDED"}}), 1);
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_queue_length"), 0);
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_worker_sessions_opened_total"), 2);
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_worker_sessions_lost_total"), 0);
  EXPECT_GT(*MetricValue(families, "metatrain_coordinator_received_bytes_total"), 0);
  EXPECT_GT(*MetricValue(families, "metatrain_coordinator_sent_bytes_total"), 0);
  EXPECT_GT(
      *MetricValue(families, "metatrain_coordinator_worker_task_seconds", {{"worker", "worker-a"}}),
      0);
  EXPECT_GT(
      *MetricValue(families, "metatrain_coordinator_worker_task_seconds", {{"worker", "worker-b"}}),
      0);
  EXPECT_EQ((*h)->coordinator().metrics().rejected_results(), 0);

  a.Stop();
  // The coordinator notices the closed session on its own gRPC thread.
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  auto after_leave = (*h)->coordinator().metrics().Collect();
  while (MetricValue(after_leave, "metatrain_coordinator_worker_sessions_lost_total") != 1 &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
    after_leave = (*h)->coordinator().metrics().Collect();
  }
  EXPECT_EQ(MetricValue(after_leave, "metatrain_coordinator_workers", {{"device", "cpu"}}), 1);
  EXPECT_EQ(MetricValue(after_leave, "metatrain_coordinator_worker_sessions_lost_total"), 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace metatrain::coordinator
