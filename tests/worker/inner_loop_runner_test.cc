#include "worker/inner_loop_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>
#include <map>
#include <vector>

#include "common/meta/aggregation.h"
#include "common/meta/job_spec.h"
#include "common/meta/trainer.h"
#include "common/rpc/tensor_codec.h"
#include "tests/testing/metric_values.h"

namespace metatrain::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

v1::JobSpec SinusoidSpec() {
  auto spec = meta::ParseJobSpec(R"({
    "name": "runner-test", "algorithm": "maml",
    "tasks": {"family": "sinusoid", "shots": 5},
    "meta_batch_size": 4, "steps": 3, "seed": 11, "test_tasks": 4
  })");
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto normalized = meta::NormalizeJobSpec(*spec);
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  return *normalized;
}

struct Reply {
  // task index -> chunks, in arrival order
  std::map<int64_t, std::vector<v1::TaskGradient>> gradients;
  std::vector<v1::AssignmentDone> done;
  std::vector<int64_t> order;  // task index of each gradient message
  int messages = 0;            // WorkerMessages emitted
};

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = SinusoidSpec();
    auto context = meta::MakeJobContext(spec_);
    ASSERT_TRUE(context.ok()) << context.status();
    context_ = std::make_unique<meta::JobContext>(std::move(*context));
    auto params = meta::InitialMetaParams(*context_);
    ASSERT_TRUE(params.ok()) << params.status();
    params_ = *params;
  }

  void Setup(InnerLoopRunner& runner, const std::string& job_id, int64_t version) {
    v1::JobSetup setup;
    setup.set_job_id(job_id);
    *setup.mutable_spec() = spec_;
    ASSERT_TRUE(runner.HandleJobSetup(setup).ok());
    SendParameters(runner, job_id, version, params_);
  }

  void SendParameters(InnerLoopRunner& runner, const std::string& job_id, int64_t version,
                      const meta::TensorList& params) {
    auto chunks = rpc::EncodeTensors(params, context_->learner->meta_param_specs(), 64);
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    for (size_t i = 0; i < chunks->size(); ++i) {
      v1::Parameters p;
      p.set_job_id(job_id);
      p.set_version(version);
      *p.mutable_chunk() = (*chunks)[i];
      p.set_last(i + 1 == chunks->size());
      ASSERT_TRUE(runner.HandleParameters(p).ok());
    }
  }

  Reply Run(InnerLoopRunner& runner, const v1::Assignment& assignment) {
    Reply reply;
    runner.HandleAssignment(assignment, [&](v1::WorkerMessage m) {
      ++reply.messages;
      auto add = [&](const v1::TaskGradient& g) {
        reply.order.push_back(g.task_index());
        reply.gradients[g.task_index()].push_back(g);
      };
      if (m.has_gradient()) {
        add(m.gradient());
      } else if (m.has_gradients()) {
        EXPECT_GE(m.gradients().gradients_size(), 2) << "a batch of one is sent unbatched";
        for (const v1::TaskGradient& g : m.gradients().gradients()) add(g);
      } else if (m.has_done()) {
        reply.done.push_back(m.done());
      }
    });
    return reply;
  }

  meta::TensorList Decode(const std::vector<v1::TaskGradient>& pieces) {
    rpc::TensorAssembler assembler(context_->learner->meta_param_specs(), context_->dtype);
    for (const auto& piece : pieces) EXPECT_TRUE(assembler.Add(piece.chunk()).ok());
    auto tensors = assembler.Finish();
    EXPECT_TRUE(tensors.ok()) << tensors.status();
    return tensors.ok() ? *tensors : meta::TensorList{};
  }

  static v1::Assignment Training(const std::string& job, int64_t version,
                                 std::vector<int64_t> indices) {
    v1::Assignment a;
    a.set_job_id(job);
    a.set_assignment_id(7);
    a.set_version(version);
    a.set_split(v1::TASK_SPLIT_TRAIN);
    a.set_round(version);
    for (int64_t i : indices) a.add_task_indices(i);
    return a;
  }

  v1::JobSpec spec_;
  std::unique_ptr<meta::JobContext> context_;
  meta::TensorList params_;
};

TEST_F(RunnerTest, TrainingAssignmentReturnsTheCoresPerTaskGradients) {
  RunnerOptions options;
  options.max_chunk_bytes = 256;  // several chunks per task
  InnerLoopRunner runner(options);
  Setup(runner, "job-1", 2);
  Reply reply = Run(runner, Training("job-1", 2, {1, 3}));

  ASSERT_EQ(reply.done.size(), 1u);
  EXPECT_THAT(reply.done[0].error(), IsEmpty());
  EXPECT_EQ(reply.done[0].assignment_id(), 7);
  EXPECT_GE(reply.done[0].compute_seconds(), 0.0);
  ASSERT_EQ(reply.gradients.size(), 2u);

  // The same two tasks computed by the core directly.
  std::vector<meta::TaskKey> keys = {{meta::Split::kTrain, 2, 1}, {meta::Split::kTrain, 2, 3}};
  auto tasks = context_->family->Sample(keys, context_->dtype);
  ASSERT_TRUE(tasks.ok());
  auto expected = context_->learner->ComputeMetaGradients(params_, *tasks);
  ASSERT_TRUE(expected.ok());

  int t = 0;
  for (int64_t index : {1, 3}) {
    const auto& pieces = reply.gradients[index];
    ASSERT_GT(pieces.size(), 1u);
    for (size_t i = 0; i < pieces.size(); ++i) {
      EXPECT_EQ(pieces[i].last(), i + 1 == pieces.size());
      EXPECT_EQ(pieces[i].assignment_id(), 7);
      EXPECT_EQ(pieces[i].task_count(), 1);
      if (pieces[i].last()) {
        ASSERT_EQ(pieces[i].query_loss_size(), 1);
        EXPECT_DOUBLE_EQ(pieces[i].query_loss(0), expected->query_loss[t].item<double>());
        EXPECT_THAT(pieces[i].query_accuracy(), ::testing::ElementsAre(-1));
      } else {
        EXPECT_EQ(pieces[i].query_loss_size(), 0);
      }
    }
    meta::TensorList got = Decode(pieces);
    ASSERT_EQ(got.size(), expected->per_task.size());
    for (size_t p = 0; p < got.size(); ++p) {
      EXPECT_TRUE(at::equal(got[p], expected->per_task[p][t]))
          << "param " << p << " task " << index;
    }
    ++t;
  }
  // All of a task's chunks are contiguous: task 1 entirely before task 3.
  EXPECT_TRUE(std::is_sorted(reply.order.begin(), reply.order.end()));
}

// JobSpec.gradient_group_size: the worker sends one gradient per group, the in-order sum
// of its tasks' (aggregation.h), with every task's query loss.
// GradientBatch (worker_service.proto): small gradients travel together, in task order,
// up to the chunk size; with a tiny chunk size every message goes alone.
TEST_F(RunnerTest, SmallGradientsTravelInOneMessageLargeOnesAlone) {
  InnerLoopRunner batched(RunnerOptions{});
  Setup(batched, "job-1", 0);
  Reply together = Run(batched, Training("job-1", 0, {0, 1, 2, 3}));
  EXPECT_EQ(together.messages, 2);  // one batch of all 4 tasks' chunks, one AssignmentDone

  RunnerOptions small;
  small.max_chunk_bytes = 64;
  InnerLoopRunner alone(small);
  Setup(alone, "job-1", 0);
  Reply apart = Run(alone, Training("job-1", 0, {0, 1, 2, 3}));
  EXPECT_EQ(apart.messages, static_cast<int>(apart.order.size()) + 1);
  EXPECT_TRUE(std::is_sorted(together.order.begin(), together.order.end()));  // task order
  for (int64_t t = 0; t < 4; ++t) {
    meta::TensorList a = Decode(together.gradients[t]), b = Decode(apart.gradients[t]);
    ASSERT_EQ(a.size(), b.size());
    for (size_t p = 0; p < a.size(); ++p) EXPECT_TRUE(at::equal(a[p], b[p])) << t << " " << p;
  }
}

TEST_F(RunnerTest, SendsOneSumPerGradientGroup) {
  spec_.set_gradient_group_size(3);
  InnerLoopRunner runner(RunnerOptions{});
  Setup(runner, "job-1", 1);
  // Groups of 3: tasks 3-5 are group 1, task 6 starts group 2.
  Reply reply = Run(runner, Training("job-1", 1, {3, 4, 5, 6}));
  ASSERT_EQ(reply.done.size(), 1u);
  EXPECT_THAT(reply.done[0].error(), IsEmpty());
  ASSERT_EQ(reply.gradients.size(), 2u);

  std::vector<meta::TaskKey> keys;
  for (int64_t index : {3, 4, 5, 6}) keys.push_back({meta::Split::kTrain, 1, index});
  auto tasks = context_->family->Sample(keys, context_->dtype);
  ASSERT_TRUE(tasks.ok());
  auto expected = context_->learner->ComputeMetaGradients(params_, *tasks);
  ASSERT_TRUE(expected.ok());
  const std::vector<meta::TensorList> per_task = meta::SplitPerTask(expected->per_task);
  const std::vector<meta::TensorList> sums = {meta::SumInOrder(per_task, 0, 3),
                                              meta::SumInOrder(per_task, 3, 4)};
  int group = 0;
  for (auto [first, count] : {std::pair<int64_t, int64_t>{3, 3}, {6, 1}}) {
    const auto& pieces = reply.gradients[first];
    ASSERT_FALSE(pieces.empty()) << first;
    EXPECT_EQ(pieces.back().task_count(), count);
    ASSERT_EQ(pieces.back().query_loss_size(), count);
    for (int64_t k = 0; k < count; ++k) {
      EXPECT_DOUBLE_EQ(pieces.back().query_loss(k),
                       expected->query_loss[first - 3 + k].item<double>());
    }
    meta::TensorList got = Decode(pieces);
    ASSERT_EQ(got.size(), sums[group].size());
    for (size_t p = 0; p < got.size(); ++p) {
      EXPECT_TRUE(at::equal(got[p], sums[group][p])) << "param " << p << " group " << group;
    }
    ++group;
  }
}

// A cancel that arrives while an assignment runs stops it before its next compute group:
// only AssignmentDone with `cancelled` goes out, no gradient.
TEST_F(RunnerTest, CancelDuringComputationStopsBeforeTheNextGroup) {
  RunnerOptions options;
  options.task_group_size = 1;
  InnerLoopRunner runner(options);
  Setup(runner, "job-1", 0);
  int asked = 0;
  Reply reply;
  runner.HandleAssignment(
      Training("job-1", 0, {0, 1, 2, 3}),
      [&](v1::WorkerMessage m) {
        if (m.has_gradient()) reply.gradients[m.gradient().task_index()].push_back(m.gradient());
        if (m.has_done()) reply.done.push_back(m.done());
      },
      [&] { return ++asked > 2; });  // cancelled after two groups started
  ASSERT_EQ(reply.done.size(), 1u);
  EXPECT_TRUE(reply.done[0].cancelled());
  EXPECT_THAT(reply.done[0].error(), IsEmpty());
  EXPECT_TRUE(reply.gradients.empty());
  // Asked before the groups of tasks 0, 1 and 2 (true: tasks 2 and 3 never start), then
  // once more by the runner to tell a cancel from an error.
  EXPECT_EQ(asked, 4);

  // Never cancelled: the same assignment answers as usual.
  Reply whole = Run(runner, Training("job-1", 0, {0, 1, 2, 3}));
  ASSERT_EQ(whole.done.size(), 1u);
  EXPECT_FALSE(whole.done[0].cancelled());
  EXPECT_EQ(whole.gradients.size(), 4u);
}

TEST_F(RunnerTest, ShardingDoesNotChangeATasksGradientBits) {
  InnerLoopRunner runner(RunnerOptions{});
  Setup(runner, "job-1", 0);
  Reply whole = Run(runner, Training("job-1", 0, {0, 1, 2, 3}));
  Reply alone = Run(runner, Training("job-1", 0, {2}));
  ASSERT_EQ(whole.done.size(), 1u);
  ASSERT_EQ(alone.done.size(), 1u);
  meta::TensorList a = Decode(whole.gradients[2]);
  meta::TensorList b = Decode(alone.gradients[2]);
  ASSERT_EQ(a.size(), b.size());
  for (size_t p = 0; p < a.size(); ++p) EXPECT_TRUE(at::equal(a[p], b[p])) << "param " << p;
}

// NOTE [Episode prefetch] (inner_loop_runner.h): prefetched episodes are the ones the
// assignment would sample, so the bits are those of a runner that samples on arrival; a
// guess that misses is dropped, and so is one made before a new setup of the same job id.
TEST_F(RunnerTest, PrefetchedEpisodesGiveTheBitsOfSamplingOnArrival) {
  WorkerMetrics metrics("cpu");
  RunnerOptions options;
  options.metrics = &metrics;
  InnerLoopRunner runner(options), fresh(RunnerOptions{});
  for (InnerLoopRunner* r : {&runner, &fresh}) Setup(*r, "job-1", 0);
  // Each round's parameters arrive after the previous round, as from a coordinator (a
  // runner keeps only the latest two versions).
  auto send = [&](int64_t version) {
    for (InnerLoopRunner* r : {&runner, &fresh}) SendParameters(*r, "job-1", version, params_);
  };
  auto expect_same_bits = [&](const Reply& a, const Reply& b, int64_t task) {
    ASSERT_EQ(a.done.size(), 1u);
    ASSERT_THAT(a.done[0].error(), IsEmpty());
    meta::TensorList x = Decode(a.gradients.at(task)), y = Decode(b.gradients.at(task));
    ASSERT_EQ(x.size(), y.size());
    for (size_t p = 0; p < x.size(); ++p) EXPECT_TRUE(at::equal(x[p], y[p])) << "param " << p;
  };
  EXPECT_FALSE(runner.PrefetchNextEpisodes());  // nothing computed yet: nothing to guess
  ASSERT_THAT(Run(runner, Training("job-1", 0, {1, 2})).done[0].error(), IsEmpty());
  EXPECT_TRUE(runner.PrefetchNextEpisodes());   // round 1, tasks 1 and 2
  EXPECT_FALSE(runner.PrefetchNextEpisodes());  // one guess per assignment
  send(1);
  Reply hit = Run(runner, Training("job-1", 1, {1, 2}));
  Reply sampled = Run(fresh, Training("job-1", 1, {1, 2}));
  expect_same_bits(hit, sampled, 1);
  expect_same_bits(hit, sampled, 2);

  // The guess is round 2, tasks 1 and 2; the assignment has others.
  EXPECT_TRUE(runner.PrefetchNextEpisodes());
  send(2);
  expect_same_bits(Run(runner, Training("job-1", 2, {0, 3})),
                   Run(fresh, Training("job-1", 2, {0, 3})), 3);

  // A new spec under the same id (another seed: other episodes) after the guess of round 3.
  ASSERT_THAT(Run(runner, Training("job-1", 2, {1, 2})).done[0].error(), IsEmpty());
  EXPECT_TRUE(runner.PrefetchNextEpisodes());
  spec_.set_seed(spec_.seed() + 1);
  InnerLoopRunner reseeded(RunnerOptions{});
  for (InnerLoopRunner* r : {&runner, &reseeded}) {
    Setup(*r, "job-1", 3);
  }
  expect_same_bits(Run(runner, Training("job-1", 3, {1, 2})),
                   Run(reseeded, Training("job-1", 3, {1, 2})), 1);

  const auto families = metrics.registry()->Collect();
  using metatrain::testing::MetricValue;
  EXPECT_EQ(
      MetricValue(families, "metatrain_worker_prefetched_batches_total", {{"outcome", "used"}}), 1);
  EXPECT_EQ(MetricValue(families, "metatrain_worker_prefetched_batches_total",
                        {{"outcome", "discarded"}}),
            1);
}

TEST_F(RunnerTest, EvaluationAssignmentReportsMetricsBeforeAndAfterAdaptation) {
  InnerLoopRunner runner(RunnerOptions{});
  Setup(runner, "job-1", 5);
  v1::Assignment a = Training("job-1", 5, {0, 1, 2});
  a.set_split(v1::TASK_SPLIT_TEST);
  a.set_round(0);
  a.set_eval_steps(3);
  Reply reply = Run(runner, a);
  EXPECT_TRUE(reply.gradients.empty());
  ASSERT_EQ(reply.done.size(), 1u);
  EXPECT_THAT(reply.done[0].error(), IsEmpty());
  ASSERT_EQ(reply.done[0].metrics_size(), 3);

  std::vector<meta::TaskKey> keys = {
      {meta::Split::kTest, 0, 0}, {meta::Split::kTest, 0, 1}, {meta::Split::kTest, 0, 2}};
  auto tasks = context_->family->Sample(keys, context_->dtype);
  ASSERT_TRUE(tasks.ok());
  auto expected = context_->learner->Evaluate(params_, *tasks, 3);
  ASSERT_TRUE(expected.ok());
  for (int i = 0; i < 3; ++i) {
    const auto& m = reply.done[0].metrics(i);
    EXPECT_EQ(m.task_index(), i);
    EXPECT_DOUBLE_EQ(m.loss_before(), expected->loss_before[i].item<double>());
    EXPECT_DOUBLE_EQ(m.loss_after(), expected->loss_after[i].item<double>());
    EXPECT_EQ(m.accuracy_before(), -1);
    EXPECT_EQ(m.accuracy_after(), -1);
  }
}

TEST_F(RunnerTest, ErrorsAreAnsweredNotThrown) {
  InnerLoopRunner runner(RunnerOptions{});
  Setup(runner, "job-1", 0);

  // A chunk that does not fit the job's parameters poisons that version only.
  v1::Parameters bad;
  bad.set_job_id("job-1");
  bad.set_version(4);
  bad.mutable_chunk()->set_tensor_index(0);
  bad.mutable_chunk()->set_dtype(v1::DTYPE_FLOAT32);
  bad.mutable_chunk()->add_shape(3);
  bad.mutable_chunk()->set_total_bytes(12);
  bad.mutable_chunk()->set_data(std::string(12, '\0'));
  EXPECT_FALSE(runner.HandleParameters(bad).ok());
  Reply poisoned = Run(runner, Training("job-1", 4, {0}));
  ASSERT_EQ(poisoned.done.size(), 1u);
  EXPECT_THAT(poisoned.done[0].error(), HasSubstr("version 4"));
  EXPECT_FALSE(poisoned.done[0].needs_setup());  // sending it again would not help
  Reply fine = Run(runner, Training("job-1", 0, {0}));
  ASSERT_EQ(fine.done.size(), 1u);
  EXPECT_THAT(fine.done[0].error(), IsEmpty());
}

TEST_F(RunnerTest, MetricsCountSetupsTasksAndTheCurrentJob) {
  WorkerMetrics metrics("cpu");
  RunnerOptions options;
  options.metrics = &metrics;
  InnerLoopRunner runner(options);
  Setup(runner, "job-1", 0);
  Setup(runner, "job-1", 1);  // the same spec again: served by the loaded job
  ASSERT_THAT(Run(runner, Training("job-1", 0, {0, 1, 2})).done[0].error(), IsEmpty());
  ASSERT_TRUE(Run(runner, Training("job-1", 9, {3})).done[0].needs_setup());
  Setup(runner, "job-2", 0);
  ASSERT_THAT(Run(runner, Training("job-2", 0, {0})).done[0].error(), IsEmpty());

  const auto families = metrics.registry()->Collect();
  using metatrain::testing::MetricValue;
  using metatrain::testing::SeriesCount;
  // The assignment without its parameters computed nothing and is not recorded.
  EXPECT_EQ(metrics.tasks_computed(), 4);
  EXPECT_EQ(MetricValue(families, "metatrain_worker_inner_loop_seconds"), 2);
  EXPECT_EQ(MetricValue(families, "metatrain_worker_dataset_cache_misses_total"), 2);
  EXPECT_EQ(MetricValue(families, "metatrain_worker_dataset_cache_hits_total"), 1);
  EXPECT_EQ(MetricValue(families, "metatrain_worker_dataset_load_seconds"), 2);
  EXPECT_EQ(MetricValue(families, "metatrain_worker_device", {{"device", "cpu"}}), 1);
  EXPECT_EQ(SeriesCount(families, "metatrain_worker_current_job"), 1);
  EXPECT_EQ(MetricValue(families, "metatrain_worker_current_job", {{"job_id", "job-2"}}), 1);
}

TEST_F(RunnerTest, JobWhoseDataCannotBeLoadedFailsItsAssignmentsWithTheCause) {
  RunnerOptions options;
  options.data_dir = "/nonexistent/metatrain-data";
  InnerLoopRunner runner(options);
  auto spec = meta::ParseJobSpec(R"({"algorithm": "maml",
      "tasks": {"family": "omniglot", "data_dir": "/somewhere"}})");
  ASSERT_TRUE(spec.ok());
  auto normalized = meta::NormalizeJobSpec(*spec);
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  v1::JobSetup setup;
  setup.set_job_id("omni");
  *setup.mutable_spec() = *normalized;
  absl::Status status = runner.HandleJobSetup(setup);
  EXPECT_FALSE(status.ok());
  // The worker's own --data_dir is the one it tried.
  EXPECT_THAT(std::string(status.message()), HasSubstr("/nonexistent/metatrain-data"));
  Reply reply = Run(runner, Training("omni", 0, {0}));
  ASSERT_EQ(reply.done.size(), 1u);
  EXPECT_THAT(reply.done[0].error(), HasSubstr("omni setup failed"));
}

// Paths that come with a job are confined to the worker's --data_root; its own --data_dir
// is the operator's and is not.
TEST_F(RunnerTest, JobPathsOutsideTheWorkersDataRootAreRefusedAsNotFound) {
  auto roots = files::ConfinedRoots::Make("--data_root", {"/nonexistent/metatrain-root"});
  ASSERT_TRUE(roots.ok()) << roots.status();
  RunnerOptions options;
  options.data_roots = *roots;
  InnerLoopRunner runner(options);
  for (const char* json : {
           R"({"algorithm": "maml", "tasks": {"family": "omniglot", "data_dir": "/etc"}})",
           R"({"algorithm": "maml", "tasks": {"family": "tensor_file",
               "tensor_file": "/etc/passwd"}})",
       }) {
    auto spec = meta::ParseJobSpec(json);
    ASSERT_TRUE(spec.ok());
    auto normalized = meta::NormalizeJobSpec(*spec);
    ASSERT_TRUE(normalized.ok()) << normalized.status();
    v1::JobSetup setup;
    setup.set_job_id("escape");
    *setup.mutable_spec() = *normalized;
    absl::Status status = runner.HandleJobSetup(setup);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("': not found under --data_root"));
  }
  // With the worker's own copy of the data, the job's data_dir is not looked at.
  options.data_dir = "/nonexistent/own-copy";
  InnerLoopRunner own(options);
  auto spec = meta::ParseJobSpec(
      R"({"algorithm": "maml", "tasks": {"family": "omniglot", "data_dir": "/etc"}})");
  ASSERT_TRUE(spec.ok());
  v1::JobSetup setup;
  setup.set_job_id("own");
  *setup.mutable_spec() = *meta::NormalizeJobSpec(*spec);
  absl::Status status = own.HandleJobSetup(setup);
  EXPECT_THAT(std::string(status.message()), HasSubstr("/nonexistent/own-copy"));
  EXPECT_THAT(std::string(status.message()), ::testing::Not(HasSubstr("--data_root")));
}

TEST_F(RunnerTest, OlderParameterVersionsAreDroppedButThePreviousIsKept) {
  InnerLoopRunner runner(RunnerOptions{});
  Setup(runner, "job-1", 0);
  SendParameters(runner, "job-1", 1, params_);
  SendParameters(runner, "job-1", 2, params_);
  EXPECT_THAT(Run(runner, Training("job-1", 2, {0})).done[0].error(), IsEmpty());
  EXPECT_THAT(Run(runner, Training("job-1", 1, {0})).done[0].error(), IsEmpty());
  const Reply dropped = Run(runner, Training("job-1", 0, {0}));
  ASSERT_EQ(dropped.done.size(), 1u);
  EXPECT_TRUE(dropped.done[0].needs_setup());
  EXPECT_TRUE(dropped.gradients.empty());
}

// What the cache no longer holds is asked for again (AssignmentDone.needs_setup), never
// reported as an error: the coordinator resends JobSetup and Parameters and the job goes on.
TEST_F(RunnerTest, AssignmentOfAForgottenJobAsksForItsSetupAndThenComputesTheSameBits) {
  RunnerOptions options;
  options.max_cached_jobs = 2;
  options.max_known_jobs = 2;
  InnerLoopRunner runner(options);
  Setup(runner, "job-1", 0);
  const Reply before = Run(runner, Training("job-1", 0, {0, 2}));
  ASSERT_EQ(before.done.size(), 1u);
  ASSERT_THAT(before.done[0].error(), IsEmpty());
  ASSERT_FALSE(before.done[0].needs_setup());
  Setup(runner, "job-2", 0);
  Setup(runner, "job-3", 0);  // evicts job-1, the least recently used
  EXPECT_EQ(runner.cached_jobs(), 2);

  // Parameters of the evicted job are dropped quietly; its assignment asks for the setup.
  SendParameters(runner, "job-1", 1, params_);
  const Reply evicted = Run(runner, Training("job-1", 0, {0, 2}));
  ASSERT_EQ(evicted.done.size(), 1u);
  EXPECT_TRUE(evicted.done[0].needs_setup());
  EXPECT_THAT(evicted.done[0].error(), IsEmpty());
  EXPECT_EQ(evicted.done[0].assignment_id(), 7);
  EXPECT_TRUE(evicted.gradients.empty());
  EXPECT_EQ(runner.cached_jobs(), 2);  // asking added nothing to the cache

  // A job never set up here is answered the same way.
  const Reply unknown = Run(runner, Training("nope", 0, {0}));
  ASSERT_EQ(unknown.done.size(), 1u);
  EXPECT_TRUE(unknown.done[0].needs_setup());
  EXPECT_THAT(unknown.done[0].error(), IsEmpty());

  // The coordinator's answer: the setup and the parameters again, then the assignment.
  Setup(runner, "job-1", 0);
  const Reply again = Run(runner, Training("job-1", 0, {0, 2}));
  ASSERT_EQ(again.done.size(), 1u);
  EXPECT_FALSE(again.done[0].needs_setup());
  EXPECT_THAT(again.done[0].error(), IsEmpty());
  ASSERT_EQ(again.gradients.size(), 2u);
  for (int64_t t : {0, 2}) {
    const meta::TensorList first = Decode(before.gradients.at(t));
    const meta::TensorList second = Decode(again.gradients.at(t));
    ASSERT_EQ(first.size(), second.size());
    for (size_t i = 0; i < first.size(); ++i) {
      EXPECT_TRUE(at::equal(first[i], second[i])) << "task " << t << " tensor " << i;
    }
  }
}

// More jobs than the cache builds: a job whose context was dropped keeps its spec and
// parameters, is built again when they are needed, and computes the same bits; it never
// asks for its setup (which, for many jobs at once, would make workers thrash).
TEST_F(RunnerTest, JobWhoseDataWasDroppedIsBuiltAgainAndComputesTheSameBits) {
  RunnerOptions options;
  options.max_cached_jobs = 1;
  InnerLoopRunner runner(options);
  Setup(runner, "job-1", 0);
  const Reply before = Run(runner, Training("job-1", 0, {0, 2}));
  ASSERT_THAT(before.done.at(0).error(), IsEmpty());
  Setup(runner, "job-2", 0);  // job-1's context goes
  EXPECT_EQ(runner.cached_jobs(), 1);
  SendParameters(runner, "job-1", 1, params_);  // built again to assemble them
  Setup(runner, "job-2", 0);                    // and dropped again
  const Reply again = Run(runner, Training("job-1", 0, {0, 2}));
  ASSERT_EQ(again.done.size(), 1u);
  EXPECT_FALSE(again.done[0].needs_setup());
  EXPECT_THAT(again.done[0].error(), IsEmpty());
  EXPECT_EQ(runner.cached_jobs(), 1);
  ASSERT_EQ(again.gradients.size(), 2u);
  for (int64_t t : {0, 2}) {
    const meta::TensorList first = Decode(before.gradients.at(t));
    const meta::TensorList second = Decode(again.gradients.at(t));
    ASSERT_EQ(first.size(), second.size());
    for (size_t i = 0; i < first.size(); ++i) {
      EXPECT_TRUE(at::equal(first[i], second[i])) << "task " << t << " tensor " << i;
    }
  }
}

// A partial parameter version (its last chunk never came) is asked for again too.
TEST_F(RunnerTest, IncompleteParameterVersionAsksForItsSetup) {
  InnerLoopRunner runner(RunnerOptions{});
  Setup(runner, "job-1", 0);
  auto chunks = rpc::EncodeTensors(params_, context_->learner->meta_param_specs(), 64);
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  ASSERT_GT(chunks->size(), 1u);
  v1::Parameters first;
  first.set_job_id("job-1");
  first.set_version(1);
  *first.mutable_chunk() = (*chunks)[0];
  ASSERT_TRUE(runner.HandleParameters(first).ok());
  const Reply reply = Run(runner, Training("job-1", 1, {0}));
  ASSERT_EQ(reply.done.size(), 1u);
  EXPECT_TRUE(reply.done[0].needs_setup());
  EXPECT_THAT(reply.done[0].error(), IsEmpty());
}

TEST(ParseDeviceTest, AcceptsCpuAndRejectsNonsense) {
  EXPECT_TRUE(ParseDevice("cpu").ok());
  EXPECT_EQ(ParseDevice("gpu0").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseDevice("cuda:x").status().code(), absl::StatusCode::kInvalidArgument);
  if (!torch::cuda::is_available()) {
    auto cuda = ParseDevice("cuda:0");
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(cuda.status().message()), HasSubstr("without CUDA"));
  }
}

}  // namespace
}  // namespace metatrain::worker
