// The job API over a real gRPC server on loopback, with real workers (in-process threads
// that compute with the meta-learning core) on real Session streams.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "tests/coordinator/test_specs.h"
#include "tests/testing/coordinator_harness.h"
#include "tests/testing/in_process_worker.h"

namespace metatrain::testing {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

coordinator::CoordinatorOptions FastOptions(const std::string& checkpoint_dir = "") {
  coordinator::CoordinatorOptions options;
  options.checkpoint_dir = checkpoint_dir;
  options.poll_interval = absl::Milliseconds(20);
  return options;
}

// A fresh folder for one test, removed when the test process exits (ctest runs each
// case in its own process).
std::string TempDir(const std::string& name) {
  struct Cleanup {
    std::vector<fs::path> dirs;
    ~Cleanup() {
      std::error_code ignored;
      for (const fs::path& dir : dirs) fs::remove_all(dir, ignored);
    }
  };
  static Cleanup cleanup;
  const fs::path dir =
      fs::temp_directory_path() / (name + "-" + std::to_string(::getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  cleanup.dirs.push_back(dir);
  return dir.string();
}

v1::JobStatus Terminal(CoordinatorHarness& h, const std::string& job_id) {
  auto events = h.WatchToEnd(job_id);
  EXPECT_TRUE(events.ok()) << events.status();
  if (!events.ok() || events->empty()) return {};
  return events->back().status();
}

TEST(JobApiTest, BadSpecsAreInvalidArgumentNamingTheField) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  struct Case {
    std::function<void(v1::JobSpec&)> edit;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](v1::JobSpec& s) { s.mutable_tasks()->set_shots(-1); }, "tasks.shots"},
      {[](v1::JobSpec& s) { s.set_algorithm("gradient_descent_by_hand"); }, "algorithm"},
      {[](v1::JobSpec& s) { s.mutable_outer()->set_kind("adagrad"); }, "outer.kind"},
      {[](v1::JobSpec& s) {
         s.mutable_tasks()->set_family("omniglot");
         s.mutable_tasks()->set_data_dir("/nonexistent/omniglot");
       },
       "tasks.data_dir"},
      {[](v1::JobSpec& s) { s.set_initial_weights("/nonexistent/weights.pt"); }, "initial_weights"},
      {[](v1::JobSpec& s) { s.set_gradient_group_size(5); }, "gradient_group_size"},
      {[](v1::JobSpec& s) { s.set_gradient_group_size(-2); }, "gradient_group_size"},
  };
  for (const auto& c : cases) {
    v1::JobSpec spec = SmallSinusoidSpec("maml", 2);
    c.edit(spec);
    auto submitted = (*h)->Submit(spec);
    EXPECT_EQ(submitted.status().code(), absl::StatusCode::kInvalidArgument)
        << c.field << ": " << submitted.status();
    EXPECT_THAT(submitted.status().message(), HasSubstr(c.field));
  }
  auto listed = (*h)->coordinator().ListJobs();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->jobs_size(), 0);
}

TEST(JobApiTest, UnknownJobIsNotFound) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ((*h)->Get("job-999999").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*h)->Cancel("job-999999").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*h)->WatchToEnd("job-999999").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*h)->Fetch("job-999999", "best").status().code(), absl::StatusCode::kNotFound);
}

// The distributed run reaches the very bits of meta::Train, whatever the sharding.
// With gradient groups (NOTE [Gradient groups]) too: 4 tasks in groups of 3 are [0, 3) and
// [3, 4), whatever the workers' capacities.
class MatchesTrainerTest : public ::testing::TestWithParam<std::tuple<std::string, int, int, int>> {
};

TEST_P(MatchesTrainerTest, BitIdenticalToSingleProcessTrainer) {
  const auto& [algorithm, num_workers, capacity, gradient_group_size] = GetParam();
  v1::JobSpec spec = SmallSinusoidSpec(algorithm, 5);
  spec.set_gradient_group_size(gradient_group_size);
  if (algorithm == "maml") {
    // Exercise the whole outer loop: clipping, the plateau schedule and early stopping.
    spec.mutable_outer()->set_clip_grad_norm(0.5);
    spec.mutable_outer()->set_schedule("plateau");
    spec.mutable_outer()->set_plateau_patience(1);
    spec.set_validation_interval(1);
    spec.set_early_stopping_patience(3);
    spec.set_steps(8);
  }
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok()) << expected.status();

  const std::string dir = TempDir("matches-trainer");
  auto h = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(h.ok()) << h.status();
  std::vector<std::unique_ptr<InProcessWorker>> workers;
  for (int i = 0; i < num_workers; ++i) {
    workers.push_back(std::make_unique<InProcessWorker>((*h)->address(), capacity));
  }
  auto job_id = (*h)->Submit(spec);
  ASSERT_TRUE(job_id.ok()) << job_id.status();
  const v1::JobStatus status = Terminal(**h, *job_id);
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(status.step(), expected->steps_run);
  EXPECT_EQ(status.stopped_early(), expected->stopped_early);

  auto final_bytes = (*h)->Fetch(*job_id, "final");
  auto best_bytes = (*h)->Fetch(*job_id, "best");
  ASSERT_TRUE(final_bytes.ok()) << final_bytes.status();
  ASSERT_TRUE(best_bytes.ok()) << best_bytes.status();
  ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *final_bytes));
  ExpectBitIdentical(expected->best_params, ParamsFromCheckpoint(context, *best_bytes));
  // The files on disk are the same state_dicts.
  auto on_disk = meta::LoadStateDict((fs::path(dir) / *job_id / "final.pt").string());
  ASSERT_TRUE(on_disk.ok()) << on_disk.status();
  EXPECT_TRUE(fs::exists(fs::path(dir) / *job_id / "best.pt"));

  EXPECT_EQ(status.test().loss_after().n(), spec.test_tasks());
  EXPECT_EQ(status.test().loss_after().mean(), expected->test.loss_after.mean);
  EXPECT_EQ(status.test().loss_after().ci95(), expected->test.loss_after.ci95);
  EXPECT_EQ(status.test().loss_before().mean(), expected->test.loss_before.mean);
  EXPECT_GT(status.best_step(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Sharding, MatchesTrainerTest,
    ::testing::Values(std::make_tuple("maml", 1, 1000, 1), std::make_tuple("maml", 3, 1, 1),
                      std::make_tuple("reptile", 2, 3, 1), std::make_tuple("maml", 1, 1000, 3),
                      std::make_tuple("maml", 3, 1, 3), std::make_tuple("maml", 2, 2, 2)),
    [](const auto& info) {
      return std::get<0>(info.param) + "_" + std::to_string(std::get<1>(info.param)) +
             "workers_capacity" + std::to_string(std::get<2>(info.param)) + "_groups" +
             std::to_string(std::get<3>(info.param));
    });

TEST(MatchesTrainerClassificationTest, SyntheticImagesOnTwoWorkers) {
  v1::JobSpec spec = SmallImageSpec(/*steps=*/3, /*seed=*/5);
  spec.set_validation_tasks(5);
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok()) << expected.status();

  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker a((*h)->address(), 1), b((*h)->address(), 3);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();
  const v1::JobStatus status = Terminal(**h, *id);
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  auto bytes = (*h)->Fetch(*id, "final");
  ASSERT_TRUE(bytes.ok());
  ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *bytes));
  EXPECT_EQ(status.test().accuracy_after().n(), 5);
  EXPECT_EQ(status.test().accuracy_after().mean(), expected->test.accuracy_after.mean);
  EXPECT_EQ(status.test().loss_after().mean(), expected->test.loss_after.mean);
  EXPECT_GE(status.train_accuracy(), 0);
  EXPECT_LE(status.train_accuracy(), 1);
}

TEST(JobApiTest, JobWithoutWorkersWaitsThenRunsWhenOneJoins) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  auto job_id = (*h)->Submit(SmallSinusoidSpec("fomaml", 2));
  ASSERT_TRUE(job_id.ok()) << job_id.status();
  auto status = (*h)->Get(*job_id);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state(), v1::RUNNING);
  EXPECT_EQ(status->workers(), 0);
  EXPECT_EQ(status->step(), 0);

  InProcessWorker worker((*h)->address());
  const v1::JobStatus done = Terminal(**h, *job_id);
  EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  EXPECT_EQ(done.step(), 2);
}

TEST(JobApiTest, CancelStopsARunningJobAndFreesTheWorkers) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker worker((*h)->address());
  auto long_job = (*h)->Submit(SmallSinusoidSpec("maml", 1'000'000));
  ASSERT_TRUE(long_job.ok()) << long_job.status();
  // Queued behind it (one running job at a time).
  auto next_job = (*h)->Submit(SmallSinusoidSpec("maml", 2));
  ASSERT_TRUE(next_job.ok()) << next_job.status();
  EXPECT_EQ((*h)->Get(*next_job)->state(), v1::QUEUED);

  auto reached = (*h)->WatchUntil(*long_job, [](const v1::JobEvent& e) {
    return e.kind() == v1::JobEvent::STEP && e.status().step() >= 2;
  });
  ASSERT_TRUE(reached.ok() && *reached) << reached.status();
  auto cancelled = (*h)->Cancel(*long_job);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);
  EXPECT_LT(cancelled->step(), 1'000'000);
  // The stream of a cancelled job ends with the terminal state.
  const v1::JobStatus final_long = Terminal(**h, *long_job);
  EXPECT_EQ(final_long.state(), v1::CANCELLED);

  const v1::JobStatus next = Terminal(**h, *next_job);
  EXPECT_EQ(next.state(), v1::SUCCEEDED) << next.error();
  // Cancelling a finished job leaves it as it was (a queued one: the next test).
  EXPECT_EQ((*h)->Cancel(*next_job)->state(), v1::SUCCEEDED);
}

TEST(JobApiTest, CancelRemovesAQueuedJobBeforeItRunsAndLeavesTheRunningOneAlone) {
  coordinator::CoordinatorOptions options = FastOptions();
  options.max_running_jobs = 1;
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker worker((*h)->address());
  auto running = (*h)->Submit(SmallSinusoidSpec("maml", 1'000'000));
  ASSERT_TRUE(running.ok()) << running.status();
  auto queued = (*h)->Submit(SmallSinusoidSpec("maml", 2));
  ASSERT_TRUE(queued.ok()) << queued.status();
  auto reached = (*h)->WatchUntil(*running, [](const v1::JobEvent& e) {
    return e.kind() == v1::JobEvent::STEP && e.status().step() >= 2;
  });
  ASSERT_TRUE(reached.ok() && *reached) << reached.status();
  // The running job holds the only slot, so the second is still waiting.
  ASSERT_EQ((*h)->Get(*queued)->state(), v1::QUEUED);

  auto cancelled = (*h)->Cancel(*queued);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);
  // It never ran: no start time, no step, no meta-test; its watch ends at once.
  const v1::JobStatus ended = Terminal(**h, *queued);
  EXPECT_EQ(ended.state(), v1::CANCELLED);
  EXPECT_EQ(ended.started_unix_ms(), 0);
  EXPECT_GT(ended.finished_unix_ms(), 0);
  EXPECT_EQ(ended.step(), 0);
  EXPECT_EQ(ended.test().loss_after().n(), 0);

  // The running job goes on stepping: cancelling its neighbour did not touch it.
  auto status = (*h)->Get(*running);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state(), v1::RUNNING);
  const int64_t step_at_cancel = status->step();
  auto advanced = (*h)->WatchUntil(*running, [&](const v1::JobEvent& e) {
    return e.kind() == v1::JobEvent::STEP && e.status().step() >= step_at_cancel + 2;
  });
  ASSERT_TRUE(advanced.ok() && *advanced) << advanced.status();
  EXPECT_EQ((*h)->Get(*running)->state(), v1::RUNNING);

  // Once the slot frees, a job submitted later runs, and the cancelled one still never
  // has: it left the queue.
  EXPECT_EQ((*h)->Cancel(*running)->state(), v1::CANCELLED);
  auto later = (*h)->Submit(SmallSinusoidSpec("maml", 2));
  ASSERT_TRUE(later.ok()) << later.status();
  const v1::JobStatus later_done = Terminal(**h, *later);
  EXPECT_EQ(later_done.state(), v1::SUCCEEDED) << later_done.error();
  auto still = (*h)->Get(*queued);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->state(), v1::CANCELLED);
  EXPECT_EQ(still->started_unix_ms(), 0);
}

TEST(JobApiTest, TwoJobsSubmittedTogetherBothFinish) {
  coordinator::CoordinatorOptions options = FastOptions();
  options.max_running_jobs = 2;
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker a((*h)->address(), 2), b((*h)->address(), 2);
  v1::JobSpec first = SmallSinusoidSpec("maml", 3);
  v1::JobSpec second = SmallSinusoidSpec("fomaml", 3);
  second.set_seed(99);
  auto id1 = (*h)->Submit(first);
  auto id2 = (*h)->Submit(second);
  ASSERT_TRUE(id1.ok() && id2.ok());
  EXPECT_NE((*h)->Get(*id2)->state(), v1::QUEUED);
  const v1::JobStatus s1 = Terminal(**h, *id1);
  const v1::JobStatus s2 = Terminal(**h, *id2);
  EXPECT_EQ(s1.state(), v1::SUCCEEDED) << s1.error();
  EXPECT_EQ(s2.state(), v1::SUCCEEDED) << s2.error();

  // Sharing the pool changed nothing: each job has its trainer's bits.
  for (const auto& [id, spec] : {std::make_pair(*id1, first), std::make_pair(*id2, second)}) {
    meta::JobContext context = MakeContext(spec);
    auto expected = meta::Train(context);
    ASSERT_TRUE(expected.ok());
    auto bytes = (*h)->Fetch(id, "final");
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *bytes));
  }
}

TEST(JobApiTest, MaxWorkersLimitsTheWorkersTakingPart) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker a((*h)->address(), 1), b((*h)->address(), 1);
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while ((*h)->coordinator().num_workers() < 2 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ((*h)->coordinator().num_workers(), 2);
  v1::JobSpec spec = SmallSinusoidSpec("maml", 3);
  spec.mutable_resources()->set_max_workers(1);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok());
  int max_workers_seen = 0;
  auto events = (*h)->WatchToEnd(*id);
  ASSERT_TRUE(events.ok());
  for (const auto& e : *events) max_workers_seen = std::max(max_workers_seen, e.status().workers());
  EXPECT_EQ(events->back().status().state(), v1::SUCCEEDED);
  EXPECT_EQ(max_workers_seen, 1);
  // Exactly one of the two computed anything.
  EXPECT_NE(a.assignments_done() > 0, b.assignments_done() > 0);
}

TEST(JobApiTest, LargeCheckpointStreamsInChunksUnderOneMebibyte) {
  v1::JobSpec spec = SmallSinusoidSpec("fomaml", 1);
  spec.mutable_model()->add_hidden_sizes(700);
  spec.mutable_model()->add_hidden_sizes(700);
  spec.set_validation_interval(0);
  spec.set_test_tasks(2);
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok());
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker worker((*h)->address());
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(Terminal(**h, *id).state(), v1::SUCCEEDED);
  // Harness::Fetch checks that every chunk is <= 1 MiB and the offsets line up.
  auto bytes = (*h)->Fetch(*id, "final");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_GT(bytes->size(), size_t{1} << 20);
  ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *bytes));
  EXPECT_EQ((*h)->Fetch(*id, "latest").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JobApiTest, WatchSendsSnapshotFirstAndEndsAfterTerminalState) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker worker((*h)->address());
  v1::JobSpec spec = SmallSinusoidSpec("maml", 4);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok());
  auto events = (*h)->WatchToEnd(*id);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_GE(events->size(), 2u);
  EXPECT_EQ(events->front().kind(), v1::JobEvent::SNAPSHOT);
  EXPECT_EQ(events->back().kind(), v1::JobEvent::STATE_CHANGE);
  EXPECT_EQ(events->back().status().state(), v1::SUCCEEDED);
  // The watch may start after the job did: validations before it are in the snapshot's
  // curve, later ones arrive as events, each once.
  const int validated_before_watch = events->front().status().validation_history_size();
  int validations = 0;
  int64_t last_step = events->front().status().step();
  for (const auto& e : *events) {
    if (e.kind() == v1::JobEvent::VALIDATION) {
      ++validations;
      EXPECT_GT(e.status().validation_history_size(), 0) << "validation events carry the curve";
      EXPECT_EQ(e.status().validation_history_size(), validated_before_watch + validations);
    }
    if (e.kind() == v1::JobEvent::STEP) {
      EXPECT_EQ(e.status().validation_history_size(), 0) << "step events leave the curve out";
    }
    EXPECT_GE(e.status().step(), last_step);
    last_step = e.status().step();
  }
  // Steps 2 and 4 validated (validation_interval 2 of 4 steps), no more, no fewer.
  EXPECT_EQ(validated_before_watch + validations, 2);
  const v1::JobStatus& last = events->back().status();
  ASSERT_EQ(last.validation_history_size(), 2);
  EXPECT_EQ(last.validation_history(0).step(), 2);
  EXPECT_EQ(last.validation_history(1).step(), 4);
  EXPECT_EQ(events->back().status().test().loss_after().n(), spec.test_tasks());
  // Watching a finished job: the snapshot, then the end.
  auto again = (*h)->WatchToEnd(*id);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].kind(), v1::JobEvent::SNAPSHOT);
}

// Jobs whose outer loop carries state from validation to validation, which a resumed run
// must replay: the plateau schedule (on loss), and best-by-accuracy selection with early
// stopping (on accuracy).
v1::JobSpec ResumableSpec(const std::string& kind) {
  if (kind == "plateau") {
    v1::JobSpec spec = SmallSinusoidSpec("maml", 9);
    spec.mutable_outer()->set_schedule("plateau");
    spec.mutable_outer()->set_plateau_patience(1);
    spec.set_checkpoint_interval(2);
    spec.set_validation_interval(1);
    return spec;
  }
  v1::JobSpec spec = SmallImageSpec(/*steps=*/9, /*seed=*/6);
  spec.mutable_outer()->set_lr(0.05);
  spec.set_validation_tasks(8);
  spec.set_early_stopping_patience(6);
  spec.set_select_best_by("accuracy");
  spec.set_checkpoint_interval(2);
  return spec;
}

class InterruptedResumeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(InterruptedResumeTest, ResumesBitIdentically) {
  const v1::JobSpec spec = ResumableSpec(GetParam());
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok()) << expected.status();

  const std::string dir = TempDir("resume");
  std::string job_id;
  {
    auto h = CoordinatorHarness::Start(FastOptions(dir));
    ASSERT_TRUE(h.ok()) << h.status();
    auto worker = std::make_unique<InProcessWorker>((*h)->address());
    auto id = (*h)->Submit(spec);
    ASSERT_TRUE(id.ok());
    job_id = *id;
    auto reached = (*h)->WatchUntil(job_id, [](const v1::JobEvent& e) {
      return e.kind() == v1::JobEvent::STEP && e.status().step() >= 5;
    });
    ASSERT_TRUE(reached.ok() && *reached);
    // Without workers the job stalls mid-run; then the coordinator goes down.
    worker->Stop();
    (*h)->Shutdown();
    auto status = (*h)->coordinator().GetJob(job_id);
    ASSERT_TRUE(status.ok());
    EXPECT_FALSE(status->state() == v1::SUCCEEDED);
  }
  ASSERT_TRUE(fs::exists(fs::path(dir) / job_id / "resume.pt"));
  auto h = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(h.ok()) << h.status();
  auto resumed = (*h)->Get(job_id);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->state(), v1::RUNNING);
  EXPECT_GE(resumed->step(), 4);
  EXPECT_LT(resumed->step(), 9);
  InProcessWorker worker((*h)->address());
  const v1::JobStatus done = Terminal(**h, job_id);
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  auto final_bytes = (*h)->Fetch(job_id, "final");
  auto best_bytes = (*h)->Fetch(job_id, "best");
  ASSERT_TRUE(final_bytes.ok() && best_bytes.ok());
  ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *final_bytes));
  ExpectBitIdentical(expected->best_params, ParamsFromCheckpoint(context, *best_bytes));
  EXPECT_EQ(done.test().loss_after().mean(), expected->test.loss_after.mean);

  // A finished job is listed after a restart, and not run again.
  (*h)->Shutdown();
  auto again = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(again.ok());
  auto listed = (*again)->Get(job_id);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->state(), v1::SUCCEEDED);
  auto fetched = (*again)->Fetch(job_id, "final");
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(*fetched, *final_bytes);

  if (spec.select_best_by() == "accuracy") {
    // best.pt holds the first most accurate validation, across the interruption.
    double best_accuracy = -1;
    int64_t best_step = 0;
    for (const v1::ValidationPoint& point : done.validation_history()) {
      if (point.result().accuracy_after().mean() > best_accuracy) {
        best_accuracy = point.result().accuracy_after().mean();
        best_step = point.step();
      }
    }
    EXPECT_EQ(done.best_step(), best_step);
    EXPECT_EQ(done.best_validation().accuracy_after().mean(), best_accuracy);
  }
}

INSTANTIATE_TEST_SUITE_P(OuterLoopState, InterruptedResumeTest,
                         ::testing::Values("plateau", "best_by_accuracy"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// Runs `spec` on a coordinator over `dir` with one worker until step `step`, then stops
// the worker and the coordinator: the job is left resumable mid-run.
void TrainUntilStepThenStop(const std::string& dir, const v1::JobSpec& spec, int64_t step,
                            std::string* job_id) {
  auto h = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(h.ok()) << h.status();
  auto worker = std::make_unique<InProcessWorker>((*h)->address());
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok());
  *job_id = *id;
  auto reached = (*h)->WatchUntil(*job_id, [step](const v1::JobEvent& e) {
    return e.kind() == v1::JobEvent::STEP && e.status().step() >= step;
  });
  ASSERT_TRUE(reached.ok() && *reached);
  worker->Stop();
  (*h)->Shutdown();
}

// A job whose checkpoint cannot be read at restart is listed as FAILED with the reason,
// not dropped; once the cause is fixed, the next restart resumes it.
TEST(ResumeTest, UnreadableCheckpointIsListedAsFailedAndResumesOnceFixed) {
  v1::JobSpec spec = SmallSinusoidSpec("maml", 9);
  spec.set_checkpoint_interval(2);
  const std::string dir = TempDir("unresumable");
  std::string job_id;
  TrainUntilStepThenStop(dir, spec, /*step=*/4, &job_id);
  ASSERT_FALSE(HasFatalFailure());
  const fs::path resume = fs::path(dir) / job_id / "resume.pt";
  const fs::path previous = fs::path(dir) / job_id / "resume.prev.pt";
  ASSERT_TRUE(fs::exists(resume));
  ASSERT_TRUE(fs::exists(previous));
  const fs::path aside = fs::path(dir) / "resume.pt.aside";
  fs::rename(resume, aside);
  fs::remove(previous);  // with it, the restart would fall back to it
  { std::ofstream(resume, std::ios::binary) << "not a checkpoint"; }
  {
    auto h = CoordinatorHarness::Start(FastOptions(dir));
    ASSERT_TRUE(h.ok()) << h.status();
    auto listed = (*h)->Get(job_id);
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_EQ(listed->state(), v1::FAILED);
    EXPECT_THAT(listed->error(), HasSubstr("not resumed after a coordinator restart"));
    EXPECT_THAT(listed->error(), HasSubstr("resume.pt"));
    EXPECT_EQ(listed->spec().meta_batch_size(), spec.meta_batch_size()) << "spec kept for listings";
    (*h)->Shutdown();
  }
  fs::remove(resume);
  fs::rename(aside, resume);
  auto h = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker worker((*h)->address());
  const v1::JobStatus done = Terminal(**h, job_id);
  EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  EXPECT_EQ(done.step(), 9);
}

// resume.pt damaged after the coordinator died (torn by the disk, a flipped bit): the
// restart falls back to resume.prev.pt and the job still ends bit-identical.
class DamagedResumeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DamagedResumeTest, FallsBackToThePreviousResumePoint) {
  v1::JobSpec spec = SmallSinusoidSpec("maml", 9);
  spec.set_checkpoint_interval(2);
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const std::string dir = TempDir("damaged");
  std::string job_id;
  TrainUntilStepThenStop(dir, spec, /*step=*/4, &job_id);
  ASSERT_FALSE(HasFatalFailure());
  const fs::path resume = fs::path(dir) / job_id / "resume.pt";
  ASSERT_TRUE(fs::exists(fs::path(dir) / job_id / "resume.prev.pt"));
  std::string bytes;
  {
    std::ifstream in(resume, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_GT(bytes.size(), 1000u);
  if (GetParam() == "truncated") {
    bytes.resize(bytes.size() / 2);
  } else {
    // Inside the largest tensor's data (torch.save stores records uncompressed): a flip
    // that the zip container does not notice; the checksum does.
    auto dict = meta::DeserializeStateDict(bytes);
    ASSERT_TRUE(dict.ok()) << dict.status();
    at::Tensor largest;
    for (const auto& [key, tensor] : *dict) {
      if (!largest.defined() || tensor.numel() > largest.numel()) largest = tensor.contiguous();
    }
    const std::string raw(static_cast<const char*>(largest.data_ptr()),
                          largest.numel() * largest.element_size());
    const size_t at = bytes.find(raw);
    ASSERT_NE(at, std::string::npos);
    bytes[at + raw.size() / 2] = static_cast<char>(bytes[at + raw.size() / 2] ^ 0x10);
    ASSERT_TRUE(meta::DeserializeStateDict(bytes).ok()) << "torch.save alone would not notice";
  }
  { std::ofstream(resume, std::ios::binary | std::ios::trunc) << bytes; }

  auto h = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(h.ok()) << h.status();
  auto resumed = (*h)->Get(job_id);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->state(), v1::RUNNING) << resumed->error();
  InProcessWorker worker((*h)->address());
  const v1::JobStatus done = Terminal(**h, job_id);
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  auto final_bytes = (*h)->Fetch(job_id, "final");
  ASSERT_TRUE(final_bytes.ok());
  ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *final_bytes));
}

INSTANTIATE_TEST_SUITE_P(Damage, DamagedResumeTest, ::testing::Values("truncated", "bit_flip"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(ResumeTest, QueuedJobSurvivesARestart) {
  const std::string dir = TempDir("queued");
  std::string job_id, blocker_id;
  {
    auto h = CoordinatorHarness::Start(FastOptions(dir));
    ASSERT_TRUE(h.ok()) << h.status();
    auto blocker = (*h)->Submit(SmallSinusoidSpec("maml", 1'000'000));
    auto queued = (*h)->Submit(SmallSinusoidSpec("maml", 2));
    ASSERT_TRUE(blocker.ok() && queued.ok());
    job_id = *queued;
    blocker_id = *blocker;
    EXPECT_EQ((*h)->Get(job_id)->state(), v1::QUEUED);
    (*h)->Shutdown();
  }
  auto h = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ((*h)->Get(blocker_id)->state(), v1::RUNNING);
  EXPECT_EQ((*h)->Get(job_id)->state(), v1::QUEUED);
  EXPECT_EQ((*h)->Cancel(blocker_id)->state(), v1::CANCELLED);
  InProcessWorker worker((*h)->address());
  const v1::JobStatus done = Terminal(**h, job_id);
  EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  // New ids continue after the ones on disk.
  auto next = (*h)->Submit(SmallSinusoidSpec("maml", 1));
  ASSERT_TRUE(next.ok());
  EXPECT_GT(*next, job_id);
}

// --- Bounded resources and safe retries (issue #13).

// NOTE: a client that stops reading makes the server's Write block once the stream's
// flow-control window is full; a tiny window (and no BDP probing, which would grow it)
// makes that happen after a few events instead of after megabytes.
std::unique_ptr<v1::JobService::Stub> SlowReaderStub(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own connection
  return v1::JobService::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
}

TEST(WatchBoundTest, WatcherThatNeverReadsStaysBoundedAndIsEndedWithResourceExhausted) {
  coordinator::CoordinatorOptions options = FastOptions();
  options.watch_max_events = 8;
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  // Validated every step: VALIDATION events are never coalesced, so a reader that is
  // behind accumulates them until the bound.
  v1::JobSpec spec = SmallSinusoidSpec("fomaml", 60);
  spec.set_validation_interval(1);
  spec.set_validation_tasks(2);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();

  // A watch over real gRPC whose client reads nothing until the job has ended.
  auto stub = SlowReaderStub((*h)->address());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  v1::WatchJobRequest request;
  request.set_job_id(*id);
  auto reader = stub->WatchJob(&context, request);
  // And the coordinator's own queue for a watcher that never takes anything.
  auto queue = (*h)->coordinator().WatchJob(*id);
  ASSERT_TRUE(queue.ok()) << queue.status();

  InProcessWorker worker((*h)->address());
  int max_seen = 0;
  ASSERT_TRUE((*h)->WatchUntil(*id,
                               [&](const v1::JobEvent& e) {
                                 max_seen = std::max(max_seen, (*queue)->size());
                                 return false;
                               })
                  .ok());
  EXPECT_EQ((*h)->Get(*id)->state(), v1::SUCCEEDED);
  EXPECT_LE(max_seen, options.watch_max_events);
  EXPECT_TRUE((*queue)->finished());
  EXPECT_EQ((*queue)->size(), 0) << "an overflowed queue holds nothing";
  EXPECT_EQ((*queue)->end_status().code(), absl::StatusCode::kResourceExhausted);

  // The slow gRPC client now reads: what was in flight, then RESOURCE_EXHAUSTED, never
  // the terminal event (it was dropped with the rest).
  v1::JobEvent event;
  int received = 0;
  bool saw_terminal = false;
  while (reader->Read(&event)) {
    ++received;
    saw_terminal = saw_terminal || event.status().state() == v1::SUCCEEDED;
  }
  grpc::Status finished = reader->Finish();
  EXPECT_EQ(finished.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << finished.error_message() << " after " << received << " events";
  EXPECT_THAT(finished.error_message(), HasSubstr("watch again"));
  EXPECT_FALSE(saw_terminal);
  // Watching again starts with the current status.
  auto again = (*h)->WatchToEnd(*id);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].kind(), v1::JobEvent::SNAPSHOT);
  EXPECT_EQ((*again)[0].status().state(), v1::SUCCEEDED);
}

TEST(WatchBoundTest, QueueCoalescesStepsAndAlwaysTakesTheTerminalEvent) {
  coordinator::JobEventQueue queue(/*max_events=*/3, /*max_bytes=*/1 << 20);
  auto event = [](v1::JobEvent::Kind kind, int64_t step) {
    auto e = std::make_shared<v1::JobEvent>();
    e->set_kind(kind);
    e->mutable_status()->set_step(step);
    return e;
  };
  queue.Push(event(v1::JobEvent::SNAPSHOT, 0), 10, false);
  for (int step = 1; step <= 50; ++step) queue.Push(event(v1::JobEvent::STEP, step), 10, false);
  EXPECT_EQ(queue.size(), 2) << "only the newest STEP is kept";
  queue.Push(event(v1::JobEvent::VALIDATION, 50), 10, false);
  queue.Push(event(v1::JobEvent::STATE_CHANGE, 50), 10, true);  // full, but terminal
  EXPECT_EQ(queue.size(), 4);
  std::vector<int64_t> steps;
  while (auto e = queue.Next(absl::ZeroDuration())) steps.push_back(e->status().step());
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 50, 50, 50}));
  EXPECT_TRUE(queue.finished());
  EXPECT_TRUE(queue.end_status().ok());
}

TEST(SubmitTest, MissingDataIsQueuedAtOnceThenFailsWithTheReasonAndOthersGoOn) {
  const std::string empty_dir = TempDir("no-omniglot");
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  v1::JobSpec spec = SmallImageSpec(2, 1);
  spec.mutable_tasks()->set_family("omniglot");
  spec.mutable_tasks()->set_data_dir(empty_dir);  // exists, but holds no data set
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  v1::SubmitJobResponse response;
  ASSERT_TRUE((*h)->jobs().SubmitJob(&context, request, &response).ok());
  // Accepted at once: the data is read when the job starts (which may already have
  // happened when the reply is built), so the failure comes later, as the job's state.
  EXPECT_THAT(response.status().state(), ::testing::AnyOf(v1::QUEUED, v1::RUNNING));
  EXPECT_TRUE(response.status().error().empty());
  const v1::JobStatus failed = Terminal(**h, response.job_id());
  EXPECT_EQ(failed.state(), v1::FAILED);
  EXPECT_THAT(failed.error(), HasSubstr("tasks.data_dir"));
  EXPECT_THAT(failed.error(), HasSubstr(empty_dir));
  // The next job is not held up by the failed one.
  InProcessWorker worker((*h)->address());
  auto next = (*h)->Submit(SmallSinusoidSpec("maml", 2));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(Terminal(**h, *next).state(), v1::SUCCEEDED);
  // Ended job threads are joined: at most the last one to end waits (for the next to end
  // or Shutdown). The last job's thread may still be on its way out when its terminal
  // event arrives, so this waits (bounded) for it to get there.
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while ((*h)->coordinator().unjoined_job_threads() > 1 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ((*h)->coordinator().unjoined_job_threads(), 1);
}

TEST(SubmitTest, RetryWithTheSameRequestIdReturnsTheSameJob) {
  const std::string dir = TempDir("request-id");
  auto h = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(h.ok()) << h.status();
  auto submit = [&](const v1::JobSpec& spec, const std::string& request_id,
                    v1::SubmitJobResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    request.set_request_id(request_id);
    return (*h)->jobs().SubmitJob(&context, request, response);
  };
  const v1::JobSpec spec = SmallSinusoidSpec("maml", 1'000'000);
  v1::SubmitJobResponse first, retry, other, conflict;
  ASSERT_TRUE(submit(spec, "req-1", &first).ok());
  ASSERT_TRUE(submit(spec, "req-1", &retry).ok());
  EXPECT_EQ(retry.job_id(), first.job_id());
  ASSERT_TRUE(submit(spec, "req-2", &other).ok());
  EXPECT_NE(other.job_id(), first.job_id());
  EXPECT_EQ(submit(SmallSinusoidSpec("maml", 3), "req-1", &conflict).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  auto listed = (*h)->coordinator().ListJobs();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs_size(), 2);
  // The submitted.pb of each is on disk when SubmitJob returns.
  EXPECT_TRUE(fs::exists(fs::path(dir) / first.job_id() / "submitted.pb"));
  EXPECT_TRUE(fs::exists(fs::path(dir) / other.job_id() / "submitted.pb"));

  // A retry after a coordinator restart still finds the job: no second one.
  (*h)->Shutdown();
  h->reset();
  h = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(h.ok()) << h.status();
  v1::SubmitJobResponse after_restart;
  ASSERT_TRUE(submit(spec, "req-1", &after_restart).ok());
  EXPECT_EQ(after_restart.job_id(), first.job_id());
  EXPECT_EQ(submit(SmallSinusoidSpec("maml", 3), "req-2", &conflict).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  listed = (*h)->coordinator().ListJobs();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs_size(), 2);
}

TEST(ListTest, PagesInSubmissionOrderAndSummariesLeaveTheCurveOut) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  std::vector<std::string> ids;
  {
    InProcessWorker worker((*h)->address());
    auto done = (*h)->Submit(SmallSinusoidSpec("maml", 4));  // validates at steps 2 and 4
    ASSERT_TRUE(done.ok());
    ASSERT_EQ(Terminal(**h, *done).state(), v1::SUCCEEDED);
    ids.push_back(*done);
  }
  for (int i = 0; i < 4; ++i) {
    auto id = (*h)->Submit(SmallSinusoidSpec("maml", 1'000'000));  // no workers: they wait
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  auto list = [&](const v1::ListJobsRequest& request, v1::ListJobsResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return (*h)->jobs().ListJobs(&context, request, response);
  };
  v1::ListJobsRequest request;
  request.set_page_size(2);
  std::vector<std::string> listed;
  int pages = 0;
  do {
    v1::ListJobsResponse page;
    ASSERT_TRUE(list(request, &page).ok());
    ++pages;
    EXPECT_LE(page.jobs_size(), 2);
    for (const auto& job : page.jobs()) {
      listed.push_back(job.job_id());
      EXPECT_EQ(job.validation_history_size(), 0) << "summaries by default";
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && pages < 10);
  EXPECT_EQ(listed, ids);
  EXPECT_EQ(pages, 3);

  v1::ListJobsRequest full;
  full.set_full(true);
  v1::ListJobsResponse whole;
  ASSERT_TRUE(list(full, &whole).ok());
  ASSERT_EQ(whole.jobs_size(), 5) << "one default-sized page holds them all";
  EXPECT_TRUE(whole.next_page_token().empty());
  EXPECT_EQ(whole.jobs(0).validation_history_size(), 2);

  v1::ListJobsRequest bad;
  bad.set_page_token("not-a-token");
  v1::ListJobsResponse unused;
  EXPECT_EQ(list(bad, &unused).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(CheckpointTest, FinishedJobsCheckpointsAreServedFromDisk) {
  const std::string dir = TempDir("from-disk");
  auto h = CoordinatorHarness::Start(FastOptions(dir));
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker worker((*h)->address());
  auto id = (*h)->Submit(SmallSinusoidSpec("maml", 2));
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(Terminal(**h, *id).state(), v1::SUCCEEDED);
  // The bytes the job produced were released when it ended: what is fetched now is
  // whatever the file holds.
  const fs::path final_path = fs::path(dir) / *id / "final.pt";
  { std::ofstream(final_path, std::ios::binary | std::ios::trunc) << "replaced on disk"; }
  auto fetched = (*h)->Fetch(*id, "final");
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(*fetched, "replaced on disk");
  EXPECT_TRUE((*h)->Fetch(*id, "best").ok());
}

TEST(CheckpointTest, WithoutACheckpointDirOnlyTheLastFinishedJobsKeepTheirs) {
  coordinator::CoordinatorOptions options = FastOptions();
  options.memory_checkpoint_jobs = 1;
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker worker((*h)->address());
  auto first = (*h)->Submit(SmallSinusoidSpec("maml", 2));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(Terminal(**h, *first).state(), v1::SUCCEEDED);
  EXPECT_TRUE((*h)->Fetch(*first, "final").ok());
  auto second = (*h)->Submit(SmallSinusoidSpec("maml", 2));
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(Terminal(**h, *second).state(), v1::SUCCEEDED);
  EXPECT_TRUE((*h)->Fetch(*second, "final").ok());
  auto released = (*h)->Fetch(*first, "final");
  EXPECT_EQ(released.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(released.status().message(), HasSubstr("released from memory"));
}

}  // namespace

}  // namespace metatrain::testing
