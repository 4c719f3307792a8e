// End-to-end: a real metatrain-coordinator and real metatrain-worker processes on
// loopback, driven through the job API. Checks what a user relies on: training works,
// the result does not depend on how many workers there are or on workers dying or joining
// mid-job, and it equals the single-process trainer's result bit for bit.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/meta/trainer.h"
#include "metatrain/v1/job_service.grpc.pb.h"
#include "tests/common/data/data_test_util.h"
#include "tests/e2e/cluster_fixture.h"
#include "tests/e2e/process.h"
#include "tests/testing/test_data.h"

namespace metatrain::e2e {
namespace {

TEST_F(Cluster, TwoWorkersMetaTrainSinusoidsAndAdaptationHelps) {
  v1::JobSpec spec = TestSpec(600);
  spec.set_meta_batch_size(10);
  spec.set_validation_interval(200);
  spec.set_test_tasks(100);
  spec.mutable_inner()->set_test_steps(10);
  AddWorker();
  AddWorker();
  const std::string job = Submit(spec);
  v1::JobStatus status = WaitForEnd(job);
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(status.step(), 600);
  const auto& test = status.test();
  EXPECT_EQ(test.loss_after().n(), 100);
  // Held-out tasks: a few gradient steps from the meta-learned initialisation must cut the
  // query MSE far below the unadapted one (it starts around the sinusoids' variance).
  EXPECT_LT(test.loss_after().mean(), 0.5 * test.loss_before().mean())
      << "before " << test.loss_before().mean() << " after " << test.loss_after().mean();
}

// Real data through the real service: the MAML paper's fully-connected net on Omniglot
// 5-way 1-shot (cbfinn split, rotations) must beat chance (20%) by a wide margin within a
// few hundred steps, and the validation curve must be recorded step by step.
TEST_F(Cluster, TwoWorkersMetaTrainOmniglotFarAboveChance) {
  SKIP_WITHOUT_OMNIGLOT();
  auto spec = meta::ParseJobSpec(absl::StrCat(R"({
    "name": "e2e-omniglot", "algorithm": "maml",
    "model": {"kind": "mlp", "hidden_sizes": [256, 128, 64, 64], "batch_norm": true},
    "tasks": {"family": "omniglot", "data_dir": ")",
                                              ::metatrain::testing::OmniglotDir(), R"(",
              "split": "maml", "ways": 5, "shots": 1, "query_size": 5, "image_size": 28},
    "meta_batch_size": 8,
    "inner": {"steps": 1, "lr": 0.4, "test_steps": 3},
    "outer": {"kind": "adam", "lr": 0.002},
    "steps": 300, "validation_interval": 100, "validation_tasks": 50,
    "test_tasks": 200, "seed": 3
  })"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  // The data may be anywhere (METATRAIN_DATA_DIR): the processes' roots must hold it.
  const std::string data_root = absl::StrCat("--data_root=", ::metatrain::testing::OmniglotDir());
  RestartCoordinator({data_root});
  AddWorker({data_root});
  AddWorker({data_root});
  const std::string job = Submit(*spec);
  v1::JobStatus status = WatchUntil(
      job, [](const v1::JobStatus&) { return false; }, std::chrono::seconds(600));
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  const auto& test = status.test();
  ASSERT_EQ(test.accuracy_after().n(), 200);
  // Unadapted, the net cannot know which of the task's shuffled labels is which.
  EXPECT_LT(test.accuracy_before().mean(), 0.3);
  // About 72% here; a broken inner loop, outer loop or data pipeline stays near 20%.
  EXPECT_GT(test.accuracy_after().mean() - test.accuracy_after().ci95(), 0.5)
      << "meta-test accuracy " << test.accuracy_after().mean() << " ± "
      << test.accuracy_after().ci95();
  ASSERT_EQ(status.validation_history_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(status.validation_history(i).step(), 100 * (i + 1));
    EXPECT_EQ(status.validation_history(i).result().accuracy_after().n(), 50);
  }
  EXPECT_EQ(status.validation_history(2).result().accuracy_after().mean(),
            status.last_validation().accuracy_after().mean());
}

TEST_F(Cluster, SameBitsWithOneTwoAndThreeWorkersAndAsTheSingleProcessTrainer) {
  const v1::JobSpec spec = TestSpec(30);
  const Reference reference = TrainInProcess(spec);
  for (int workers = 1; workers <= 3; ++workers) {
    AddWorker();
    const std::string job = Submit(spec);
    v1::JobStatus status = WaitForEnd(job);
    ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
    const std::string what = absl::StrCat(workers, " worker(s)");
    ExpectBitIdentical(Fetch(job, "final", reference), reference.result.final_params,
                       what + ", final");
    ExpectBitIdentical(Fetch(job, "best", reference), reference.result.best_params,
                       what + ", best");
    // The meta-test ran on the same tasks with the same parameters.
    EXPECT_EQ(status.test().loss_after().mean(), reference.result.test.loss_after.mean) << what;
  }
}

TEST_F(Cluster, KilledWorkersTasksAreReassignedAndTheBitsDoNotChange) {
  const v1::JobSpec spec = TestSpec(60);
  const Reference reference = TrainInProcess(spec);
  AddWorker();
  ChildProcess& doomed = AddWorker();
  const std::string job = Submit(spec);
  v1::JobStatus seen = WatchUntil(job, [](const v1::JobStatus& s) {
    return s.state() == v1::RUNNING && s.step() >= 3 && s.workers() == 2;
  });
  ASSERT_EQ(seen.state(), v1::RUNNING) << "the job ended before both workers took part";
  doomed.Signal(SIGKILL);
  ASSERT_TRUE(doomed.Wait(absl::Seconds(30)).ok());
  v1::JobStatus status = WaitForEnd(job);
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(status.step(), 60);
  ExpectBitIdentical(Fetch(job, "final", reference), reference.result.final_params,
                     "after a worker was killed");
}

// Gradient groups (JobSpec.gradient_group_size, docs/service.md): 7 tasks in groups of 3
// are [0, 3), [3, 6), [6, 7). Real workers sum each group before sending; with one worker,
// with three of capacity 2 (each still gets a whole group) and with one of them killed
// mid-job, the bits are metatrain-train's with the same groups.
TEST_F(Cluster, GradientGroupsGiveTheTrainersBitsWithAnyWorkersAndAKilledOne) {
  v1::JobSpec spec = TestSpec(40);
  spec.set_gradient_group_size(3);
  const Reference reference = TrainInProcess(spec);
  AddWorker();
  {
    const std::string alone = Submit(spec);
    v1::JobStatus status = WaitForEnd(alone);
    ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
    ExpectBitIdentical(Fetch(alone, "final", reference), reference.result.final_params,
                       "groups of 3, one worker");
  }
  AddWorker({"--capacity", "2"});
  ChildProcess& doomed = AddWorker({"--capacity", "2"});
  const std::string job = Submit(spec);
  v1::JobStatus seen = WatchUntil(job, [](const v1::JobStatus& s) {
    return s.state() == v1::RUNNING && s.step() >= 3 && s.workers() == 3;
  });
  ASSERT_EQ(seen.state(), v1::RUNNING) << "the job ended before all three workers took part";
  doomed.Signal(SIGKILL);
  ASSERT_TRUE(doomed.Wait(absl::Seconds(30)).ok());
  v1::JobStatus status = WaitForEnd(job);
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  ExpectBitIdentical(Fetch(job, "final", reference), reference.result.final_params,
                     "groups of 3, three workers, one killed");
  EXPECT_EQ(status.test().loss_after().mean(), reference.result.test.loss_after.mean);
}

// Twenty SIGKILLs at random moments of one job, each victim replaced by a fresh worker
// (without waiting for it: sometimes no worker is left for a moment). Whatever was in
// flight, whoever computed what, the job ends with the undisturbed run's bits.
TEST_F(Cluster, TwentyRandomWorkerKillsDuringOneJobChangeNoBit) {
  v1::JobSpec spec = TestSpec(8000);
  spec.set_validation_interval(1000);
  const Reference reference = TrainInProcess(spec);
  for (int i = 0; i < 3; ++i) AddWorker();
  const std::string job = Submit(spec);
  v1::JobStatus seen = WatchUntil(
      job, [](const v1::JobStatus& s) { return s.state() == v1::RUNNING && s.step() >= 1; });
  ASSERT_EQ(seen.state(), v1::RUNNING);

  std::mt19937 random(20261202);  // the moments and victims differ from run to run only
  std::uniform_int_distribution<int> pause_ms(50, 300);  // through the machine's timing
  int kills = 0;
  int64_t step_at_last_kill = -1;
  while (kills < 20) {
    absl::SleepFor(absl::Milliseconds(pause_ms(random)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::GetJobRequest request;
    request.set_job_id(job);
    v1::JobStatus now;
    ASSERT_TRUE(stub_->GetJob(&context, request, &now).ok());
    ASSERT_EQ(now.state(), v1::RUNNING) << "the job ended after " << kills << " kills";
    step_at_last_kill = now.step();
    std::vector<size_t> alive;
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i]->running()) alive.push_back(i);
    }
    if (alive.empty()) continue;
    const size_t victim = alive[std::uniform_int_distribution<size_t>(0, alive.size() - 1)(random)];
    workers_[victim]->Signal(SIGKILL);
    ASSERT_TRUE(workers_[victim]->Wait(absl::Seconds(30)).ok());
    ++kills;
    const std::string log = absl::StrCat(dir_, "/worker-replacement-", kills, ".log");
    auto replacement = StartWorker(coordinator_.address, log);
    ASSERT_TRUE(replacement.ok()) << replacement.status();
    workers_[victim] = std::move(*replacement);
  }
  v1::JobStatus status = WaitForEnd(job);
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(status.step(), 8000);
  EXPECT_LT(step_at_last_kill, 8000);
  ExpectBitIdentical(Fetch(job, "final", reference), reference.result.final_params,
                     "after 20 worker kills");
}

// The coordinator dies (SIGKILL) mid-job and comes back at the same address: the job
// resumes from its last resume.pt, the workers reconnect by themselves, and the result is
// the uninterrupted run's, bit for bit.
TEST_F(Cluster, CoordinatorKilledMidJobResumesAndTheBitsDoNotChange) {
  v1::JobSpec spec = TestSpec(60);
  spec.set_checkpoint_interval(10);
  const Reference reference = TrainInProcess(spec);
  AddWorker();
  AddWorker();
  const std::string job = Submit(spec);
  v1::JobStatus seen = WatchUntil(job, [](const v1::JobStatus& s) { return s.step() >= 25; });
  ASSERT_EQ(seen.state(), v1::RUNNING);
  coordinator_.process->Signal(SIGKILL);
  ASSERT_TRUE(coordinator_.process->Wait(absl::Seconds(30)).ok());
  auto restarted = StartCoordinator(dir_, {}, coordinator_.address);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  coordinator_ = std::move(*restarted);
  ReconnectStub();
  v1::JobStatus status = WaitForEnd(job);
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(status.step(), 60);
  ExpectBitIdentical(Fetch(job, "final", reference), reference.result.final_params,
                     "after the coordinator was killed and restarted");
}

// SIGTERM: the coordinator stops within 10 s with exit status 0, leaving a resume point at
// the last finished step (no periodic checkpoint is due: the job's intervals are long), and
// the next start continues from there to the same bits.
TEST_F(Cluster, SigtermStopsCleanlyAndLosesNoFinishedStep) {
  v1::JobSpec spec = TestSpec(60);
  spec.set_checkpoint_interval(0);  // only the 300 s default, never reached here
  const Reference reference = TrainInProcess(spec);
  AddWorker();
  const std::string job = Submit(spec);
  v1::JobStatus seen = WatchUntil(job, [](const v1::JobStatus& s) { return s.step() >= 20; });
  ASSERT_EQ(seen.state(), v1::RUNNING);
  const absl::Time signalled = absl::Now();
  coordinator_.process->Signal(SIGTERM);
  auto exit_code = coordinator_.process->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit_code.ok()) << "still running 10 s after SIGTERM";
  EXPECT_EQ(*exit_code, 0);
  std::printf("coordinator stopped %.2f s after SIGTERM\n",
              absl::ToDoubleSeconds(absl::Now() - signalled));
  auto resume = meta::LoadStateDict(absl::StrCat(dir_, "/checkpoints/", job, "/resume.pt"));
  ASSERT_TRUE(resume.ok()) << resume.status();
  EXPECT_GE(resume->at("step").item<int64_t>(), seen.step());

  auto restarted = StartCoordinator(dir_, {}, coordinator_.address);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  coordinator_ = std::move(*restarted);
  ReconnectStub();
  v1::JobStatus status = WaitForEnd(job);
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  ExpectBitIdentical(Fetch(job, "final", reference), reference.result.final_params,
                     "after a SIGTERM and a restart");
}

// More jobs at once than the workers cache (--max_cached_jobs 2, 6 jobs): a job whose data
// was dropped is built again on the worker from the spec and parameters it keeps, and every
// job still has the single-process trainer's bits.
TEST_F(Cluster, MoreJobsThanTheWorkersCacheAllSucceedWithTheSameBits) {
  RestartCoordinator({"--max_running_jobs=6"});
  ASSERT_FALSE(HasFatalFailure());
  AddWorker({"--max_cached_jobs=2", "--capacity=4"});
  AddWorker({"--max_cached_jobs=2", "--capacity=4"});
  std::vector<v1::JobSpec> specs;
  std::vector<std::string> jobs;
  for (int i = 0; i < 6; ++i) {
    v1::JobSpec spec = TestSpec(6);
    spec.set_seed(40 + i);
    specs.push_back(spec);
    jobs.push_back(Submit(spec));
  }
  for (int i = 0; i < 6; ++i) {
    const v1::JobStatus status = WaitForEnd(jobs[i]);
    ASSERT_EQ(status.state(), v1::SUCCEEDED) << jobs[i] << ": " << status.error();
    const Reference reference = TrainInProcess(specs[i]);
    ExpectBitIdentical(Fetch(jobs[i], "final", reference), reference.result.final_params, jobs[i]);
  }
  // The workers rebuilt the jobs whose data their 2-job caches dropped from the specs and
  // parameters they keep: none had to ask for a setup again.
  int asked = 0;
  for (int w = 1; w <= 2; ++w) {
    std::ifstream log(absl::StrCat(dir_, "/worker-", w, ".log"));
    for (std::string line; std::getline(log, line);) {
      asked += line.find("asked the coordinator to send them again") != std::string::npos;
    }
  }
  EXPECT_EQ(asked, 0);
}

TEST_F(Cluster, WorkerJoiningMidJobGetsWork) {
  const v1::JobSpec spec = TestSpec(100000);  // long: cancelled once the point is made
  AddWorker();
  const std::string job = Submit(spec);
  v1::JobStatus running = WatchUntil(
      job, [](const v1::JobStatus& s) { return s.state() == v1::RUNNING && s.step() >= 2; });
  ASSERT_EQ(running.state(), v1::RUNNING);
  EXPECT_EQ(running.workers(), 1);
  AddWorker();
  v1::JobStatus joined = WatchUntil(
      job, [](const v1::JobStatus& s) { return s.workers() == 2; }, std::chrono::seconds(120));
  EXPECT_EQ(joined.workers(), 2) << "the new worker never took part in a step";
  EXPECT_EQ(joined.state(), v1::RUNNING);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::CancelJobRequest request;
  request.set_job_id(job);
  v1::CancelJobResponse response;
  ASSERT_TRUE(stub_->CancelJob(&context, request, &response).ok());
  EXPECT_EQ(WaitForEnd(job).state(), v1::CANCELLED);
}

// A worker started before its coordinator waits for it, and outlives it: when the
// coordinator dies and another one comes up at the same address, the worker reconnects and
// serves the new coordinator's jobs.
TEST(WorkerLifecycle, WaitsForTheCoordinatorAndReconnectsAfterARestart) {
  const std::string dir = MakeTempDir("metatrain-e2e-restart-");
  ASSERT_FALSE(dir.empty());
  const std::string listen = absl::StrCat("127.0.0.1:", UnusedPort());
  auto worker = StartWorker(listen, dir + "/worker.log");
  ASSERT_TRUE(worker.ok()) << worker.status();
  for (int life = 1; life <= 2; ++life) {
    const std::string life_dir = absl::StrCat(dir, "/life-", life);
    ASSERT_EQ(mkdir(life_dir.c_str(), 0755), 0);
    auto coordinator = StartCoordinator(life_dir, {}, listen);
    ASSERT_TRUE(coordinator.ok()) << coordinator.status();
    auto stub = v1::JobService::NewStub(
        grpc::CreateChannel(coordinator->address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext submit_context;
    submit_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::SubmitJobRequest request;
    *request.mutable_spec() = TestSpec(5);
    v1::SubmitJobResponse response;
    ASSERT_TRUE(stub->SubmitJob(&submit_context, request, &response).ok());
    // The only worker is the one started first: the job can only finish through it.
    grpc::ClientContext watch_context;
    watch_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::WatchJobRequest watch;
    watch.set_job_id(response.job_id());
    auto stream = stub->WatchJob(&watch_context, watch);
    v1::JobEvent event;
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    while (stream->Read(&event)) {
      state = event.status().state();
      if (state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED) break;
    }
    watch_context.TryCancel();
    stream->Finish();
    EXPECT_EQ(state, v1::SUCCEEDED) << "life " << life;
    coordinator->process->Signal(SIGKILL);
    ASSERT_TRUE(coordinator->process->Wait(absl::Seconds(30)).ok());
  }
  EXPECT_TRUE((*worker)->running()) << "the worker must outlive its coordinator";
}

}  // namespace
}  // namespace metatrain::e2e
