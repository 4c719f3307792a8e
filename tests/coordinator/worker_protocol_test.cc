// The worker side of the coordinator, driven message by message by hand-written workers
// over real Session streams: bad, stale and reordered results, lost workers.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rpc/tensor_codec.h"
#include "common/status/grpc_status.h"
#include "common/version/version.h"
#include "tests/coordinator/test_specs.h"
#include "tests/testing/coordinator_harness.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/in_process_worker.h"
#include "tests/testing/library_worker.h"
#include "tests/testing/metric_values.h"
#include "tests/testing/scripted_worker.h"

namespace metatrain::testing {
namespace {

using ::testing::HasSubstr;

coordinator::CoordinatorOptions FastOptions() {
  coordinator::CoordinatorOptions options;
  options.poll_interval = absl::Milliseconds(20);
  return options;
}

// Plain SGD, so the expected update is p - 0.1 * mean(g).
v1::JobSpec SgdSpec(int64_t meta_batch, int64_t steps) {
  v1::JobSpec spec = SmallSinusoidSpec("fomaml", steps);
  spec.set_meta_batch_size(meta_batch);
  spec.mutable_outer()->set_kind("sgd");
  spec.mutable_outer()->set_lr(0.1);
  spec.set_validation_interval(0);
  spec.set_test_tasks(2);
  return spec;
}

meta::TensorList Filled(const meta::JobContext& context, double value) {
  meta::TensorList out;
  for (const auto& spec : context.learner->meta_param_specs()) {
    out.push_back(at::full(spec.shape, value, at::TensorOptions().dtype(context.dtype)));
  }
  return out;
}

meta::TensorList SgdStep(const meta::TensorList& params, double mean, double lr) {
  meta::TensorList out;
  for (const auto& p : params) out.push_back(p.add(at::full_like(p, mean), -lr));
  return out;
}

// Answers a training assignment with task t's gradient = (t + 1) everywhere.
void AnswerTraining(ScriptedWorker& w, const meta::JobContext& context, const v1::Assignment& a) {
  ASSERT_EQ(a.eval_steps(), 0);
  for (int64_t t : a.task_indices()) {
    ASSERT_TRUE(w.SendGradient(a.assignment_id(), t, Filled(context, t + 1.0), 0.5));
  }
  ASSERT_TRUE(w.SendDone(a.assignment_id()));
}

void AnswerEvaluation(ScriptedWorker& w, const v1::Assignment& a) {
  ASSERT_GT(a.eval_steps(), 0);
  std::vector<v1::TaskMetrics> metrics;
  for (int64_t t : a.task_indices()) {
    v1::TaskMetrics m;
    m.set_task_index(t);
    m.set_loss_before(2.0);
    m.set_loss_after(1.0);
    m.set_accuracy_before(-1);
    m.set_accuracy_after(-1);
    metrics.push_back(m);
  }
  ASSERT_TRUE(w.SendDone(a.assignment_id(), metrics));
}

enum class Fault {
  kNone,
  kNonFinite,
  kWrongShape,
  kWrongDtype,
  kMalformedChunk,
  kTaskOutsideAssignment,
  kDoneWithoutGradients,
  kWorkerError,
  kNonFiniteLoss,
  kBadBatch,
};

class BadResultTest : public ::testing::TestWithParam<Fault> {};

TEST_P(BadResultTest, IsRejectedAndNeverApplied) {
  const Fault fault = GetParam();
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  auto w = ScriptedWorker::Connect((*h)->address(), /*capacity=*/8);
  ASSERT_TRUE(w.ok()) << w.status();
  const v1::JobSpec spec = SgdSpec(/*meta_batch=*/2, /*steps=*/2);
  meta::JobContext context = MakeContext(spec);
  const auto& specs = context.learner->meta_param_specs();
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();

  auto a = (*w)->NextAssignment();
  ASSERT_TRUE(a.has_value());
  ASSERT_EQ(a->version(), 0);
  ASSERT_EQ(a->task_indices_size(), 2);
  EXPECT_EQ((*w)->SpecOf(*id)->meta_batch_size(), 2);
  auto v0 = (*w)->ParamsOf(*id, 0, specs, context.dtype);
  ASSERT_TRUE(v0.ok()) << v0.status();

  const auto& counters = (*h)->coordinator().metrics();
  const int64_t id_a = a->assignment_id();
  meta::TensorList bad = Filled(context, 1.0);
  switch (fault) {
    case Fault::kNone:
      break;
    case Fault::kNonFinite:
      bad[0].view(-1)[3] = std::numeric_limits<float>::quiet_NaN();
      ASSERT_TRUE((*w)->SendGradient(id_a, 0, bad, 0.5));
      break;
    case Fault::kWrongShape:
      bad[0] = bad[0].reshape({-1});
      ASSERT_TRUE((*w)->SendGradient(id_a, 0, bad, 0.5));
      break;
    case Fault::kWrongDtype:
      for (auto& t : bad) t = t.to(at::kDouble);
      ASSERT_TRUE((*w)->SendGradient(id_a, 0, bad, 0.5));
      break;
    case Fault::kMalformedChunk: {
      auto chunks = rpc::EncodeTensors(bad);
      ASSERT_TRUE(chunks.ok());
      v1::WorkerMessage message;
      message.mutable_gradient()->set_assignment_id(id_a);
      message.mutable_gradient()->set_task_index(0);
      *message.mutable_gradient()->mutable_chunk() = (*chunks)[0];
      message.mutable_gradient()->mutable_chunk()->set_offset(4);
      ASSERT_TRUE((*w)->Write(message));
      break;
    }
    case Fault::kTaskOutsideAssignment:
      ASSERT_TRUE((*w)->SendGradient(id_a, 7, bad, 0.5));
      break;
    case Fault::kDoneWithoutGradients:
      ASSERT_TRUE((*w)->SendDone(id_a));
      break;
    case Fault::kWorkerError:
      ASSERT_TRUE((*w)->SendDone(id_a, {}, "cannot read the data directory"));
      break;
    case Fault::kNonFiniteLoss:
      ASSERT_TRUE((*w)->SendGradient(id_a, 0, bad, std::nan("")));
      break;
    case Fault::kBadBatch: {
      // A GradientBatch naming two assignments is refused whole, before routing; one whose
      // first gradient is not finite gets its assignment refused, and the good gradient
      // after it in the batch arrives stale.
      bad[0].view(-1)[3] = std::numeric_limits<float>::quiet_NaN();
      v1::WorkerMessage mixed, batch;
      for (int64_t assignment : {id_a, id_a + 1}) {
        for (auto& g : ScriptedWorker::GroupGradientMessages(assignment, 0, bad, {0.5}, {-1})) {
          *mixed.mutable_gradients()->add_gradients() = std::move(g);
        }
      }
      ASSERT_TRUE((*w)->Write(mixed));
      for (int64_t task : {0, 1}) {
        for (auto& g : ScriptedWorker::GroupGradientMessages(
                 id_a, task, task == 0 ? bad : Filled(context, 1000.0), {0.5}, {-1})) {
          *batch.mutable_gradients()->add_gradients() = std::move(g);
        }
      }
      ASSERT_TRUE((*w)->Write(batch));
      break;
    }
  }
  v1::Assignment step0 = *a;
  if (fault != Fault::kNone) {
    // The rest of the refused assignment arrives late: it must be dropped, not applied.
    ASSERT_TRUE((*w)->SendGradient(id_a, 1, Filled(context, 1000.0), 0.5));
    auto again = (*w)->NextAssignment();
    ASSERT_TRUE(again.has_value());
    EXPECT_NE(again->assignment_id(), id_a);
    EXPECT_EQ(again->version(), 0);
    EXPECT_EQ(again->eval_steps(), 0);
    step0 = *again;
  }
  AnswerTraining(**w, context, step0);

  // Step 2. A result for step 1's assignment now is stale.
  auto b = (*w)->NextAssignment();
  ASSERT_TRUE(b.has_value());
  ASSERT_EQ(b->version(), 1);
  const int64_t stale_before = counters.stale_messages();
  ASSERT_TRUE((*w)->SendGradient(step0.assignment_id(), 0, Filled(context, -500.0), 0.5));
  ASSERT_TRUE((*w)->SendDone(step0.assignment_id()));
  AnswerTraining(**w, context, *b);

  auto c = (*w)->NextAssignment();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->split(), v1::TASK_SPLIT_TEST);
  EXPECT_EQ(c->version(), 2);
  AnswerEvaluation(**w, *c);
  const v1::JobStatus status = (*h)->WatchToEnd(*id)->back().status();
  EXPECT_EQ(status.state(), v1::SUCCEEDED) << status.error();

  // Only the good gradients (1 and 2: mean 1.5) were applied, once per step.
  auto v1_params = (*w)->ParamsOf(*id, 1, specs, context.dtype);
  auto v2_params = (*w)->ParamsOf(*id, 2, specs, context.dtype);
  ASSERT_TRUE(v1_params.ok() && v2_params.ok());
  const meta::TensorList expected1 = SgdStep(*v0, 1.5, 0.1);
  ExpectBitIdentical(expected1, *v1_params);
  ExpectBitIdentical(SgdStep(expected1, 1.5, 0.1), *v2_params);
  EXPECT_GE(counters.stale_messages() - stale_before, 2);
  if (fault != Fault::kNone) {
    EXPECT_GE(counters.rejected_results(), 1);
  } else {
    EXPECT_EQ(counters.rejected_results(), 0);
  }
  EXPECT_EQ(status.test().loss_after().mean(), 1.0);
  EXPECT_EQ(status.test().loss_after().n(), 2);
}

INSTANTIATE_TEST_SUITE_P(Faults, BadResultTest,
                         ::testing::Values(Fault::kNone, Fault::kNonFinite, Fault::kWrongShape,
                                           Fault::kWrongDtype, Fault::kMalformedChunk,
                                           Fault::kTaskOutsideAssignment,
                                           Fault::kDoneWithoutGradients, Fault::kWorkerError,
                                           Fault::kNonFiniteLoss, Fault::kBadBatch),
                         [](const ::testing::TestParamInfo<Fault>& info) -> std::string {
                           switch (info.param) {
                             case Fault::kNone:
                               return "None";
                             case Fault::kNonFinite:
                               return "NonFinite";
                             case Fault::kWrongShape:
                               return "WrongShape";
                             case Fault::kWrongDtype:
                               return "WrongDtype";
                             case Fault::kMalformedChunk:
                               return "MalformedChunk";
                             case Fault::kTaskOutsideAssignment:
                               return "TaskOutsideAssignment";
                             case Fault::kDoneWithoutGradients:
                               return "DoneWithoutGradients";
                             case Fault::kWorkerError:
                               return "WorkerError";
                             case Fault::kNonFiniteLoss:
                               return "NonFiniteLoss";
                             case Fault::kBadBatch:
                               return "BadBatch";
                           }
                           return "Unknown";
                         });

TEST(WorkerProtocolTest, PersistentlyBadWorkerFailsTheJobWithoutAnUpdate) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  auto w = ScriptedWorker::Connect((*h)->address());
  ASSERT_TRUE(w.ok()) << w.status();
  const v1::JobSpec spec = SgdSpec(2, 3);
  meta::JobContext context = MakeContext(spec);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok());
  meta::TensorList bad = Filled(context, 1.0);
  bad.back().view(-1)[0] = std::numeric_limits<float>::infinity();
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto a = (*w)->NextAssignment();
    ASSERT_TRUE(a.has_value()) << attempt;
    EXPECT_EQ(a->version(), 0);
    ASSERT_TRUE((*w)->SendGradient(a->assignment_id(), a->task_indices(0), bad, 0.5));
  }
  const v1::JobStatus status = (*h)->WatchToEnd(*id)->back().status();
  EXPECT_EQ(status.state(), v1::FAILED);
  EXPECT_THAT(status.error(), HasSubstr("non-finite"));
  EXPECT_EQ(status.step(), 0);
  EXPECT_FALSE((*w)->HasParams(*id, 1));
  EXPECT_EQ((*h)->Fetch(*id, "final").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(WorkerProtocolTest, AggregationIsIndependentOfArrivalOrder) {
  // In float32, (1e8 + 1) - 1e8 = 0 but (-1e8 + 1e8) + 1 = 1: summing in arrival order
  // would move the parameters when the tasks come back as 2, 0, 1.
  const std::vector<double> values = {1e8, 1, -1e8};
  std::vector<meta::TensorList> after;
  for (const std::vector<int64_t>& order :
       {std::vector<int64_t>{0, 1, 2}, std::vector<int64_t>{2, 0, 1}}) {
    auto h = CoordinatorHarness::Start(FastOptions());
    ASSERT_TRUE(h.ok()) << h.status();
    auto w = ScriptedWorker::Connect((*h)->address(), 3);
    ASSERT_TRUE(w.ok());
    const v1::JobSpec spec = SgdSpec(3, 1);
    meta::JobContext context = MakeContext(spec);
    auto id = (*h)->Submit(spec);
    ASSERT_TRUE(id.ok());
    auto a = (*w)->NextAssignment();
    ASSERT_TRUE(a.has_value());
    ASSERT_EQ(a->task_indices_size(), 3);
    for (int64_t t : order) {
      ASSERT_TRUE((*w)->SendGradient(a->assignment_id(), t, Filled(context, values[t]), 0.5));
    }
    ASSERT_TRUE((*w)->SendDone(a->assignment_id()));
    auto test = (*w)->NextAssignment();
    ASSERT_TRUE(test.has_value());
    const auto& specs = context.learner->meta_param_specs();
    auto v0 = (*w)->ParamsOf(*id, 0, specs, context.dtype);
    auto v1_params = (*w)->ParamsOf(*id, 1, specs, context.dtype);
    ASSERT_TRUE(v0.ok() && v1_params.ok());
    ExpectBitIdentical(*v0, *v1_params);  // the task-order mean is exactly 0
    after.push_back(*v1_params);
    AnswerEvaluation(**w, *test);
  }
  ExpectBitIdentical(after[0], after[1]);
}

TEST(WorkerProtocolTest, LostWorkerTasksAreRecomputedElsewhereWithTheSameResult) {
  v1::JobSpec spec = SmallSinusoidSpec("maml", 3);
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok());

  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  // The scripted worker joins first, so it gets the first shard, and then vanishes.
  auto quitter = ScriptedWorker::Connect((*h)->address(), 1);
  ASSERT_TRUE(quitter.ok());
  InProcessWorker worker((*h)->address(), 1);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok());
  auto a = (*quitter)->NextAssignment();
  ASSERT_TRUE(a.has_value());
  // Half an answer (the first chunk of a task's gradient), then the connection drops. (A
  // whole task's gradient would be a valid result, used if it arrived before the drop.)
  auto chunks =
      rpc::EncodeTensors(Filled(context, 1000.0), std::vector<std::string>{}, /*max_chunk=*/64);
  ASSERT_TRUE(chunks.ok() && chunks->size() > 1);
  v1::WorkerMessage half;
  half.mutable_gradient()->set_assignment_id(a->assignment_id());
  half.mutable_gradient()->set_task_index(a->task_indices(0));
  *half.mutable_gradient()->mutable_chunk() = chunks->front();
  half.mutable_gradient()->set_task_count(1);
  ASSERT_TRUE((*quitter)->Write(half));
  quitter->reset();

  const v1::JobStatus status = (*h)->WatchToEnd(*id)->back().status();
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  auto bytes = (*h)->Fetch(*id, "final");
  ASSERT_TRUE(bytes.ok());
  ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *bytes));
  EXPECT_GE((*h)->coordinator().metrics().reassigned_tasks(), 1);
  EXPECT_EQ((*h)->coordinator().num_workers(), 1);
}

TEST(WorkerProtocolTest, FailingWorkerSitsOutAndOthersFinishTheJobExactly) {
  v1::JobSpec spec = SmallSinusoidSpec("maml", 4);
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok());

  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  auto failing = ScriptedWorker::Connect((*h)->address(), 1);
  ASSERT_TRUE(failing.ok());
  int failures = 0;
  std::thread answer([&] {
    while (auto a = (*failing)->NextAssignment()) {
      ++failures;
      if (!(*failing)->SendDone(a->assignment_id(), {}, "cannot open the data directory")) break;
    }
  });
  InProcessWorker worker((*h)->address(), 1);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok());
  const v1::JobStatus status = (*h)->WatchToEnd(*id)->back().status();
  (*h)->Shutdown();
  answer.join();
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_GE(failures, 1);
  EXPECT_EQ((*h)->coordinator().metrics().rejected_results(), failures);
  auto bytes = (*h)->coordinator().FetchCheckpoint(*id, "final");
  ASSERT_TRUE(bytes.ok());
  ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *bytes->bytes));
}

// NOTE [Quarantine]: a worker that fails again and again is left out of every round of every
// job for the backoff, instead of costing one failed attempt per round.
TEST(WorkerProtocolTest, WorkerThatFailsAgainAndAgainIsQuarantined) {
  v1::JobSpec spec = SmallSinusoidSpec("maml", 6);
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok());

  coordinator::CoordinatorOptions options = FastOptions();
  options.quarantine.failures_to_quarantine = 2;
  options.quarantine.backoff = absl::Hours(1);  // longer than the job
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  auto failing = ScriptedWorker::Connect((*h)->address(), 1);
  ASSERT_TRUE(failing.ok());
  std::atomic<int> failures{0};
  std::thread answer([&] {
    while (auto a = (*failing)->NextAssignment()) {
      ++failures;
      if (!(*failing)->SendDone(a->assignment_id(), {}, "cannot open the data directory")) break;
    }
  });
  InProcessWorker worker((*h)->address(), 1);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok());
  const v1::JobStatus status = (*h)->WatchToEnd(*id)->back().status();
  (*h)->Shutdown();
  answer.join();
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  // Without quarantine it would fail once per round (6 training steps, the meta-test).
  EXPECT_EQ(failures.load(), 2);
  EXPECT_EQ((*h)->coordinator().metrics().worker_quarantines(), 1);
  auto bytes = (*h)->coordinator().FetchCheckpoint(*id, "final");
  ASSERT_TRUE(bytes.ok());
  ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *bytes->bytes));
}

// Both workers answer whatever evaluation comes (copies included) until the job ends; then
// the coordinator shuts down. The job's final status.
v1::JobStatus AnswerEvaluationsToTheEnd(CoordinatorHarness& h, const std::string& job_id,
                                        std::vector<ScriptedWorker*> workers) {
  std::vector<std::thread> answering;
  for (ScriptedWorker* w : workers) {
    answering.emplace_back([w] {
      while (auto a = w->NextAssignment()) {
        if (a->eval_steps() > 0) AnswerEvaluation(*w, *a);
      }
    });
  }
  const v1::JobStatus status = h.WatchToEnd(job_id)->back().status();
  h.Shutdown();
  for (std::thread& t : answering) t.join();
  return status;
}

// NOTE [Speculative duplicates]: a worker that sits on its tasks does not hold up the step:
// once the other worker is done, it gets a copy of the open tasks, the first result wins,
// the late one is stale, and the bits are those of an undisturbed run.
TEST(SpeculationTest, IdleWorkerCopiesTheStragglersTasksAndTheBitsDoNotChange) {
  FakeClock clock;  // frozen: no deadline ever passes, only the copy can finish the step
  coordinator::CoordinatorOptions options;
  options.clock = &clock;
  options.assignment_timeout = absl::Seconds(30);
  options.poll_interval = absl::Hours(24);
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  auto slow = ScriptedWorker::Connect((*h)->address(), 2);
  auto fast = ScriptedWorker::Connect((*h)->address(), 2);
  ASSERT_TRUE(slow.ok() && fast.ok());
  const v1::JobSpec spec = SgdSpec(/*meta_batch=*/4, /*steps=*/1);
  const meta::JobContext context = MakeContext(spec);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();

  auto held = (*slow)->NextAssignment();
  auto own = (*fast)->NextAssignment();
  ASSERT_TRUE(held.has_value() && own.has_value());
  ASSERT_THAT(held->task_indices(), ::testing::ElementsAre(0, 1));
  ASSERT_THAT(own->task_indices(), ::testing::ElementsAre(2, 3));
  AnswerTraining(**fast, context, *own);
  // The fast worker is idle and nothing is pending: it gets the slow worker's open tasks.
  auto copy = (*fast)->NextAssignment();
  ASSERT_TRUE(copy.has_value());
  EXPECT_EQ(copy->eval_steps(), 0);
  EXPECT_THAT(copy->task_indices(), ::testing::ElementsAre(0, 1));
  const auto& counters = (*h)->coordinator().metrics();
  EXPECT_EQ(counters.speculative_tasks(), 2);
  // The slow worker answers task 0 first, with the same values the copy will send.
  ASSERT_TRUE((*slow)->SendGradient(held->assignment_id(), 0, Filled(context, 1.0), 0.5));
  AnswerTraining(**fast, context, *copy);
  // Then it finishes: task 0 was its, task 1 the copy's; its answer for task 1 is dropped.
  ASSERT_TRUE((*slow)->SendGradient(held->assignment_id(), 1, Filled(context, 2.0), 0.5));
  ASSERT_TRUE((*slow)->SendDone(held->assignment_id()));

  // The meta-test: both answer whatever evaluation comes (copies included) until the end.
  const v1::JobStatus status = AnswerEvaluationsToTheEnd(**h, *id, {slow->get(), fast->get()});
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(counters.rejected_results(), 0);
  EXPECT_EQ(counters.reassigned_tasks(), 0);
  auto init = meta::InitialMetaParams(context);
  ASSERT_TRUE(init.ok());
  auto bytes = (*h)->coordinator().FetchCheckpoint(*id, "final");
  ASSERT_TRUE(bytes.ok());
  // Gradients 1, 2, 3, 4: the mean is 2.5 whichever copy delivered tasks 0 and 1.
  ExpectBitIdentical(SgdStep(*init, 2.5, 0.1), ParamsFromCheckpoint(context, *bytes->bytes));
}

// NOTE [Speculative duplicates]: no copy of an assignment that is not overdue. Two workers
// start their shards at once; the first answers after 10 s (5 s per task observed), so the
// other's two tasks are overdue at 1.5 x 5 s x 2 = 15 s: no copy at 10 s, one at 20 s.
TEST(SpeculationTest, NoCopyUntilTheOtherAssignmentIsOverdue) {
  FakeClock clock;
  coordinator::CoordinatorOptions options;
  options.clock = &clock;
  options.assignment_timeout = absl::Hours(1);
  options.poll_interval = absl::Seconds(1);  // fake seconds: the runner looks again each one
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  auto slow = ScriptedWorker::Connect((*h)->address(), 2);
  auto fast = ScriptedWorker::Connect((*h)->address(), 2);
  ASSERT_TRUE(slow.ok() && fast.ok());
  const v1::JobSpec spec = SgdSpec(/*meta_batch=*/4, /*steps=*/1);
  const meta::JobContext context = MakeContext(spec);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();

  auto held = (*slow)->NextAssignment();
  auto own = (*fast)->NextAssignment();
  ASSERT_TRUE(held.has_value() && own.has_value());
  clock.Advance(absl::Seconds(10));
  AnswerTraining(**fast, context, *own);
  const auto& counters = (*h)->coordinator().metrics();
  absl::SleepFor(absl::Milliseconds(500));  // real time for the runner to take the answer
  EXPECT_EQ(counters.speculative_tasks(), 0) << "copied an assignment that is not overdue";
  clock.Advance(absl::Seconds(10));
  auto copy = (*fast)->NextAssignment();
  ASSERT_TRUE(copy.has_value());
  EXPECT_THAT(copy->task_indices(), ::testing::ElementsAre(0, 1));
  EXPECT_EQ(counters.speculative_tasks(), 2);
  AnswerTraining(**fast, context, *copy);

  const v1::JobStatus status = AnswerEvaluationsToTheEnd(**h, *id, {slow->get(), fast->get()});
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
}

// Skips JobSetup and Parameters; the next Assignment or CancelAssignment (nullopt when the
// stream ends first).
std::optional<v1::CoordinatorMessage> NextAssignmentOrCancel(ScriptedWorker& w) {
  while (auto message = w.Read()) {
    if (message->has_assignment() || message->has_cancel()) return message;
  }
  return std::nullopt;
}

// NOTE [Cancelled assignments]: the straggler whose copy lost is told to cancel, gets no
// more work of the job until it answers (here: a whole step), then takes part again; the
// bits are those of the plain SGD steps.
TEST(SpeculationTest, LosingCopyIsCancelledAndItsWorkerWaitsForItsAnswer) {
  FakeClock clock;  // frozen: no deadline passes
  coordinator::CoordinatorOptions options;
  options.clock = &clock;
  options.poll_interval = absl::Hours(24);
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  auto slow = ScriptedWorker::Connect((*h)->address(), 2);
  auto fast = ScriptedWorker::Connect((*h)->address(), 2);
  ASSERT_TRUE(slow.ok() && fast.ok());
  const v1::JobSpec spec = SgdSpec(/*meta_batch=*/4, /*steps=*/3);
  const meta::JobContext context = MakeContext(spec);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();

  // Step 0: the fast worker does its share and a copy of the slow worker's.
  auto held = (*slow)->NextAssignment();
  auto own = (*fast)->NextAssignment();
  ASSERT_TRUE(held.has_value() && own.has_value());
  AnswerTraining(**fast, context, *own);
  auto copy = (*fast)->NextAssignment();
  ASSERT_TRUE(copy.has_value());
  ASSERT_THAT(copy->task_indices(), ::testing::ElementsAre(0, 1));
  AnswerTraining(**fast, context, *copy);
  // Step 1: the slow worker has not answered its cancelled assignment, so the fast worker
  // gets both shares.
  for (int share = 0; share < 2; ++share) {
    auto a = (*fast)->NextAssignment();
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->version(), 1);
    AnswerTraining(**fast, context, *a);
  }
  // Step 1 is over (the runner took the fast worker's answers) before the slow worker
  // answers: otherwise it could be given a copy of step 1's open tasks instead.
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while ((*h)->Get(*id)->step() < 2 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GE((*h)->Get(*id)->step(), 2);
  auto cancel = NextAssignmentOrCancel(**slow);
  ASSERT_TRUE(cancel.has_value());
  ASSERT_TRUE(cancel->has_cancel()) << cancel->DebugString();
  EXPECT_EQ(cancel->cancel().assignment_id(), held->assignment_id());
  const auto& counters = (*h)->coordinator().metrics();
  EXPECT_EQ(counters.assignments_cancelled(), 1);
  // It answers (it had not started the assignment) after its straggler probation (5 s,
  // NOTE [Speculative duplicates]): it is given work again in step 2.
  clock.Advance(absl::Seconds(6));
  v1::WorkerMessage done;
  done.mutable_done()->set_assignment_id(held->assignment_id());
  done.mutable_done()->set_cancelled(true);
  ASSERT_TRUE((*slow)->Write(done));
  auto first = (*fast)->NextAssignment();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->version(), 2);
  auto second = NextAssignmentOrCancel(**slow);
  ASSERT_TRUE(second.has_value() && second->has_assignment()) << "no work after answering";
  EXPECT_EQ(second->assignment().version(), 2);
  AnswerTraining(**fast, context, *first);
  AnswerTraining(**slow, context, second->assignment());

  const v1::JobStatus status = AnswerEvaluationsToTheEnd(**h, *id, {slow->get(), fast->get()});
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(counters.rejected_results(), 0);
  auto init = meta::InitialMetaParams(context);
  ASSERT_TRUE(init.ok());
  auto bytes = (*h)->coordinator().FetchCheckpoint(*id, "final");
  ASSERT_TRUE(bytes.ok());
  ExpectBitIdentical(SgdStep(SgdStep(SgdStep(*init, 2.5, 0.1), 2.5, 0.1), 2.5, 0.1),
                     ParamsFromCheckpoint(context, *bytes->bytes));
}

// Waits (bounded in real time) until the job's runner has taken every message sent before
// this call: a Done for an assignment that never existed is counted stale when the runner
// reaches it, and a session's messages reach the runner in order.
void DrainRunnerInbox(CoordinatorHarness& h, ScriptedWorker& w, int64_t unknown_assignment) {
  const int64_t before = h.coordinator().metrics().stale_messages();
  ASSERT_TRUE(w.SendDone(unknown_assignment));
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (h.coordinator().metrics().stale_messages() == before && absl::Now() < give_up) {
    std::this_thread::yield();
  }
  ASSERT_GT(h.coordinator().metrics().stale_messages(), before) << "runner never drained";
}

TEST(WorkerProtocolTest, SilentWorkerLosesItsTasksWhenItsDeadlinePassesAndNotBefore) {
  FakeClock clock;
  coordinator::CoordinatorOptions options;
  options.clock = &clock;
  options.assignment_timeout = absl::Seconds(30);
  // Only deadlines and messages wake the runner: nothing here depends on real time.
  options.poll_interval = absl::Hours(24);
  // The deadline alone, not an idle helper's copy, must move the task.
  options.speculative_duplicates = false;
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  auto silent = ScriptedWorker::Connect((*h)->address(), 1);
  auto helper = ScriptedWorker::Connect((*h)->address(), 1);
  ASSERT_TRUE(silent.ok() && helper.ok());
  const v1::JobSpec spec = SgdSpec(/*meta_batch=*/2, /*steps=*/1);
  const meta::JobContext context = MakeContext(spec);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();

  // Join order decides the shards: task 0 to the silent worker, task 1 to the helper.
  auto hung = (*silent)->NextAssignment();
  auto answered = (*helper)->NextAssignment();
  ASSERT_TRUE(hung.has_value() && answered.has_value());
  ASSERT_THAT(hung->task_indices(), ::testing::ElementsAre(0));
  ASSERT_THAT(answered->task_indices(), ::testing::ElementsAre(1));
  AnswerTraining(**helper, context, *answered);
  const int64_t probe = answered->assignment_id() + 1000;
  DrainRunnerInbox(**h, **helper, probe);
  const auto& counters = (*h)->coordinator().metrics();
  EXPECT_EQ(counters.reassigned_tasks(), 0);

  // One second short of the deadline: the runner wakes (the probe) and keeps waiting.
  clock.Advance(absl::Seconds(29));
  DrainRunnerInbox(**h, **helper, probe);
  EXPECT_EQ(counters.reassigned_tasks(), 0);

  // Past it: task 0 goes to the helper, and the silent worker sits out the round.
  clock.Advance(absl::Seconds(2));
  auto retry = (*helper)->NextAssignment();
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->version(), 0);
  EXPECT_THAT(retry->task_indices(), ::testing::ElementsAre(0));
  EXPECT_EQ(counters.reassigned_tasks(), 1);
  // The silent worker wakes up too late: its answer is stale and never applied.
  ASSERT_TRUE((*silent)->SendGradient(hung->assignment_id(), 0, Filled(context, 1000.0), 0.5));
  ASSERT_TRUE((*silent)->SendDone(hung->assignment_id()));
  AnswerTraining(**helper, context, *retry);

  // The meta-test round takes every live worker again.
  for (auto* w : {silent->get(), helper->get()}) {
    auto test = w->NextAssignment();
    ASSERT_TRUE(test.has_value());
    AnswerEvaluation(*w, *test);
  }
  const v1::JobStatus status = (*h)->WatchToEnd(*id)->back().status();
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_GE(counters.stale_messages(), 3);
  EXPECT_EQ(counters.rejected_results(), 0);
  auto init = meta::InitialMetaParams(context);
  ASSERT_TRUE(init.ok());
  auto bytes = (*h)->Fetch(*id, "final");
  ASSERT_TRUE(bytes.ok());
  ExpectBitIdentical(SgdStep(*init, 1.5, 0.1), ParamsFromCheckpoint(context, *bytes));
}

// NOTE [Deadlines from observed task times]: tasks took 2 s each in step 0, so with the
// factor 20 a one-task assignment of step 1 is late after 40 s, not after the 600 s
// assignment_timeout; the hung worker is told to cancel and its task goes to the helper.
TEST(WorkerProtocolTest, HungWorkerLosesItsTasksAtTheDeadlineItsJobsTaskTimesGive) {
  FakeClock clock;
  coordinator::CoordinatorOptions options;
  options.clock = &clock;
  options.assignment_timeout = absl::Seconds(600);
  options.deadline_factor = 20;
  options.min_deadline = absl::Seconds(10);
  options.poll_interval = absl::Hours(24);
  options.speculative_duplicates = false;  // the deadline alone must move the task
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  auto hanging = ScriptedWorker::Connect((*h)->address(), 1);
  auto helper = ScriptedWorker::Connect((*h)->address(), 1);
  ASSERT_TRUE(hanging.ok() && helper.ok());
  const v1::JobSpec spec = SgdSpec(/*meta_batch=*/2, /*steps=*/2);
  const meta::JobContext context = MakeContext(spec);
  auto id = (*h)->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();

  auto first = (*hanging)->NextAssignment();
  auto other = (*helper)->NextAssignment();
  ASSERT_TRUE(first.has_value() && other.has_value());
  clock.Advance(absl::Seconds(2));
  AnswerTraining(**hanging, context, *first);
  AnswerTraining(**helper, context, *other);
  auto hung = (*hanging)->NextAssignment();
  auto answered = (*helper)->NextAssignment();
  ASSERT_TRUE(hung.has_value() && answered.has_value());
  ASSERT_EQ(hung->version(), 1);
  AnswerTraining(**helper, context, *answered);
  const int64_t probe = answered->assignment_id() + 1000;
  DrainRunnerInbox(**h, **helper, probe);
  const auto& counters = (*h)->coordinator().metrics();
  clock.Advance(absl::Seconds(39));
  DrainRunnerInbox(**h, **helper, probe);
  EXPECT_EQ(counters.reassigned_tasks(), 0) << "late before 20 x 2 s";
  clock.Advance(absl::Seconds(2));
  auto retry = (*helper)->NextAssignment();
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->version(), 1);
  EXPECT_THAT(retry->task_indices(), ::testing::ElementsAreArray(hung->task_indices()));
  EXPECT_EQ(counters.reassigned_tasks(), 1);
  EXPECT_EQ(counters.assignments_cancelled(), 1);
  AnswerTraining(**helper, context, *retry);
  // The hung worker comes back: it reads the cancel and answers it, and takes part again.
  auto cancel = (*hanging)->Read();
  ASSERT_TRUE(cancel.has_value() && cancel->has_cancel()) << "no CancelAssignment";
  v1::WorkerMessage done;
  done.mutable_done()->set_assignment_id(cancel->cancel().assignment_id());
  done.mutable_done()->set_cancelled(true);
  ASSERT_TRUE((*hanging)->Write(done));
  const v1::JobStatus status = AnswerEvaluationsToTheEnd(**h, *id, {hanging->get(), helper->get()});
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(counters.rejected_results(), 0);
  auto init = meta::InitialMetaParams(context);
  ASSERT_TRUE(init.ok());
  auto bytes = (*h)->coordinator().FetchCheckpoint(*id, "final");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ExpectBitIdentical(SgdStep(SgdStep(*init, 1.5, 0.1), 1.5, 0.1),
                     ParamsFromCheckpoint(context, *bytes->bytes));
}

TEST(WorkerProtocolTest, SessionMustStartWithHello) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  auto channel = grpc::CreateChannel((*h)->address(), grpc::InsecureChannelCredentials());
  auto stub = v1::WorkerService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->Session(&context);
  v1::WorkerMessage message;
  message.mutable_done()->set_assignment_id(1);
  ASSERT_TRUE(stream->Write(message));
  v1::CoordinatorMessage reply;
  EXPECT_FALSE(stream->Read(&reply));
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("Hello"));
  EXPECT_EQ((*h)->coordinator().num_workers(), 0);
}

TEST(WorkerProtocolTest, WorkersGetShutdownWhenTheCoordinatorStops) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  auto w = ScriptedWorker::Connect((*h)->address());
  ASSERT_TRUE(w.ok());
  (*h)->Shutdown();
  bool shutdown = false;
  while (auto message = (*w)->Read()) shutdown = shutdown || message->has_shutdown();
  EXPECT_TRUE(shutdown);
}

// NOTE [Work distribution], the job cache: with more jobs running than a worker caches,
// the real worker (SessionClient + InnerLoopRunner) evicts job setups, answers their next
// assignments with needs_setup, and the coordinator sends the setup again. Every job
// succeeds with exactly the bits of the single-process trainer.
TEST(JobCacheTest, EightJobsOnWorkersCachingTwoAllSucceedWithTheTrainersBits) {
  std::vector<v1::JobSpec> specs;
  const char* algorithms[] = {"maml", "fomaml", "reptile", "meta_sgd", "anil", "maml"};
  for (int i = 0; i < 6; ++i) {
    v1::JobSpec spec = SmallSinusoidSpec(algorithms[i], /*steps=*/3);
    spec.set_seed(100 + i);
    specs.push_back(spec);
  }
  specs.push_back(SmallImageSpec(/*steps=*/2, /*seed=*/7));
  specs.push_back(SmallImageSpec(/*steps=*/2, /*seed=*/8));

  coordinator::CoordinatorOptions options = FastOptions();
  options.max_running_jobs = 8;
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  std::vector<std::unique_ptr<LibraryWorker>> workers;
  for (int i = 0; i < 2; ++i) {
    worker::SessionOptions session;
    session.coordinator = (*h)->address();
    session.name = absl::StrCat("cache-2-worker-", i);
    session.capacity = 2;  // 4 tasks per step: both workers take part in every round
    session.verbose = false;
    worker::RunnerOptions runner;
    runner.max_cached_jobs = 2;
    // Forgets whole jobs too (the default keeps 64 jobs' specs and parameters and rebuilds
    // dropped contexts by itself): this test is about the needs_setup resends.
    runner.max_known_jobs = 2;
    workers.push_back(std::make_unique<LibraryWorker>(session, runner));
  }
  std::vector<std::string> ids;
  for (const auto& spec : specs) {
    auto id = (*h)->Submit(spec);
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  for (const auto& id : ids) {
    auto state = (*h)->Get(id);
    ASSERT_TRUE(state.ok()) << state.status();
    EXPECT_NE(state->state(), v1::QUEUED) << id << ": all eight run at once";
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    auto events = (*h)->WatchToEnd(ids[i], absl::Seconds(300));
    ASSERT_TRUE(events.ok()) << events.status();
    const v1::JobStatus status = events->back().status();
    ASSERT_EQ(status.state(), v1::SUCCEEDED) << ids[i] << ": " << status.error();

    meta::JobContext context = MakeContext(specs[i]);
    auto expected = meta::Train(context);
    ASSERT_TRUE(expected.ok()) << expected.status();
    auto final_bytes = (*h)->Fetch(ids[i], "final");
    auto best_bytes = (*h)->Fetch(ids[i], "best");
    ASSERT_TRUE(final_bytes.ok() && best_bytes.ok()) << ids[i];
    SCOPED_TRACE(ids[i]);
    ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *final_bytes));
    ExpectBitIdentical(expected->best_params, ParamsFromCheckpoint(context, *best_bytes));
    EXPECT_EQ(status.test().loss_after().mean(), expected->test.loss_after.mean);
  }

  // The caches really were too small, and asking again cost no attempt and no rejection.
  const auto families = (*h)->coordinator().metrics().Collect();
  const double resent = MetricValue(families, "metatrain_coordinator_reassigned_tasks_total",
                                    {{"reason", "needs_setup"}})
                            .value_or(-1);
  EXPECT_GT(resent, 0);
  EXPECT_EQ((*h)->coordinator().metrics().rejected_results(), 0);
  for (const auto& w : workers) EXPECT_EQ(w->sessions(), 1);  // no reconnection either
  std::printf("8 jobs on 2 workers caching 2 jobs each: %.0f task(s) resent with their setup\n",
              resent);
}

// A worker that keeps asking for the setup without ever computing is bounded: after
// kMaxSetupRequestsInARow resends its answer counts as a failure (a rejection), and a
// worker that does so every time fails the job instead of looping forever.
TEST(JobCacheTest, WorkerThatAlwaysAsksForTheSetupFailsTheJobAfterBoundedResends) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  auto w = ScriptedWorker::Connect((*h)->address(), 8, absl::Seconds(30));
  ASSERT_TRUE(w.ok()) << w.status();
  auto id = (*h)->Submit(SgdSpec(/*meta_batch=*/2, /*steps=*/1));
  ASSERT_TRUE(id.ok()) << id.status();
  // 3 attempts (max_task_attempts), each of 16 answers taken as "send it again" and one
  // refused.
  constexpr int kExpectedAssignments = 3 * 17;
  int setups = 0, assignments = 0;
  while (assignments < kExpectedAssignments) {
    auto message = (*w)->Read();
    ASSERT_TRUE(message.has_value()) << "after " << assignments << " assignments";
    if (message->has_job_setup()) ++setups;
    if (!message->has_assignment()) continue;
    ++assignments;
    EXPECT_EQ(message->assignment().version(), 0);
    v1::WorkerMessage done;
    done.mutable_done()->set_assignment_id(message->assignment().assignment_id());
    done.mutable_done()->set_needs_setup(true);
    ASSERT_TRUE((*w)->Write(done));
  }
  const v1::JobStatus status = (*h)->WatchToEnd(*id)->back().status();
  EXPECT_EQ(status.state(), v1::FAILED);
  EXPECT_THAT(status.error(), HasSubstr("asked for the job's setup 17 times in a row"));
  EXPECT_EQ(status.step(), 0);
  // Every assignment came with the setup again: each answer made the coordinator forget it.
  EXPECT_EQ(setups, kExpectedAssignments);
  EXPECT_EQ((*h)->coordinator().metrics().rejected_results(), 3);
  const auto families = (*h)->coordinator().metrics().Collect();
  EXPECT_EQ(MetricValue(families, "metatrain_coordinator_reassigned_tasks_total",
                        {{"reason", "needs_setup"}}),
            3 * 16 * 2);  // two tasks per assignment
}

// Hello.version: a worker of another build is refused, naming both versions; so is one
// that sends none. Nothing is registered.
TEST(AdmissionTest, WorkerOfAnotherVersionIsRefusedNamingBothVersions) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  v1::Hello other = ScriptedWorker::DefaultHello();
  other.set_version("0.0.0-other");
  auto refused = ScriptedWorker::ConnectWith((*h)->address(), other);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("\"0.0.0-other\""));
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr(absl::StrCat("\"", Version(), "\"")));

  v1::Hello unversioned = ScriptedWorker::DefaultHello();
  unversioned.clear_version();
  EXPECT_EQ(ScriptedWorker::ConnectWith((*h)->address(), unversioned).status().code(),
            absl::StatusCode::kFailedPrecondition);

  v1::Hello odd_device = ScriptedWorker::DefaultHello();
  odd_device.set_device("tpu:0");
  auto bad_device = ScriptedWorker::ConnectWith((*h)->address(), odd_device);
  EXPECT_EQ(bad_device.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_device.status().message()), HasSubstr("tpu:0"));

  EXPECT_EQ((*h)->coordinator().num_workers(), 0);
  auto same = ScriptedWorker::Connect((*h)->address());
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ((*h)->coordinator().num_workers(), 1);
}

// The real worker does not retry a refusal: Run() ends with it (metatrain-worker then exits
// with status 3), where an unreachable coordinator would be retried forever.
TEST(AdmissionTest, RefusedLibraryWorkerStopsInsteadOfRetrying) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  worker::SessionOptions session;
  session.coordinator = (*h)->address();
  session.device = "tpu:0";  // what the coordinator refuses; a version mismatch likewise
  session.verbose = false;
  LibraryWorker worker(session, worker::RunnerOptions{});
  const absl::Status exit = worker.WaitForExit(absl::Seconds(60));
  EXPECT_EQ(exit.code(), absl::StatusCode::kInvalidArgument) << exit;
  EXPECT_THAT(std::string(exit.message()), HasSubstr("refused this worker"));
  EXPECT_EQ(worker.sessions(), 0);
}

// resources.device_type: only workers of that type take part, so a job's bits never mix
// CPU and CUDA arithmetic. A cuda job waits for a cuda worker; cpu workers are not used.
TEST(DeviceTypeTest, JobsUseOnlyWorkersOfTheirDeviceType) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  v1::Hello cuda_hello = ScriptedWorker::DefaultHello(8);
  cuda_hello.set_device("cuda:1");
  auto cuda = ScriptedWorker::ConnectWith((*h)->address(), cuda_hello);
  ASSERT_TRUE(cuda.ok()) << cuda.status();

  // A cpu job (the default) with the cuda worker connected first: only the cpu worker,
  // which joins later, computes it, and the bits are the trainer's.
  const v1::JobSpec cpu_spec = SmallSinusoidSpec("maml", 2);
  meta::JobContext context = MakeContext(cpu_spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok()) << expected.status();
  auto cpu_job = (*h)->Submit(cpu_spec);
  ASSERT_TRUE(cpu_job.ok()) << cpu_job.status();
  {
    InProcessWorker cpu_worker((*h)->address(), 2);
    const v1::JobStatus status = (*h)->WatchToEnd(*cpu_job)->back().status();
    ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
    EXPECT_EQ(status.spec().resources().device_type(), "cpu");
    auto bytes = (*h)->Fetch(*cpu_job, "final");
    ASSERT_TRUE(bytes.ok());
    ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *bytes));
  }

  // A cuda job with a cpu worker connected: it goes to the cuda worker only.
  InProcessWorker cpu_worker((*h)->address(), 8);
  v1::JobSpec cuda_spec = SgdSpec(/*meta_batch=*/2, /*steps=*/1);
  cuda_spec.mutable_resources()->set_device_type("cuda");
  auto cuda_job = (*h)->Submit(cuda_spec);
  ASSERT_TRUE(cuda_job.ok()) << cuda_job.status();
  const meta::JobContext cuda_context = MakeContext(cuda_spec);
  auto train = (*cuda)->NextAssignment();
  ASSERT_TRUE(train.has_value());
  // The first thing the cuda worker ever got is this job: nothing of the cpu job.
  EXPECT_FALSE((*cuda)->SpecOf(*cpu_job).has_value());
  EXPECT_EQ((*cuda)->SpecOf(*cuda_job)->resources().device_type(), "cuda");
  EXPECT_EQ(train->task_indices_size(), 2);  // the whole round: the cpu worker takes no part
  AnswerTraining(**cuda, cuda_context, *train);
  auto test = (*cuda)->NextAssignment();
  ASSERT_TRUE(test.has_value());
  EXPECT_EQ(test->task_indices_size(), 2);
  AnswerEvaluation(**cuda, *test);
  const v1::JobStatus status = (*h)->WatchToEnd(*cuda_job)->back().status();
  ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(cpu_worker.assignments_done(), 0);
}

// --no_worker_timeout: a job that has no worker it may use (here only a cuda worker is
// connected to a cpu job) fails with the reason once the timeout has passed, not before.
TEST(WorkerWaitTest, JobWithNoUsableWorkerFailsAfterTheTimeoutAndNotBefore) {
  FakeClock clock;
  coordinator::CoordinatorOptions options;
  options.clock = &clock;
  options.poll_interval = absl::Seconds(1);
  options.no_worker_timeout = absl::Seconds(60);
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  v1::Hello cuda_hello = ScriptedWorker::DefaultHello(8);
  cuda_hello.set_device("cuda");
  auto cuda = ScriptedWorker::ConnectWith((*h)->address(), cuda_hello);
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  auto id = (*h)->Submit(SgdSpec(/*meta_batch=*/2, /*steps=*/1));
  ASSERT_TRUE(id.ok()) << id.status();

  absl::Duration advanced;
  v1::JobStatus status;
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  while (absl::Now() < give_up) {
    auto got = (*h)->Get(*id);
    ASSERT_TRUE(got.ok()) << got.status();
    status = *got;
    if (status.state() == v1::FAILED) break;
    clock.Advance(absl::Seconds(1));
    advanced += absl::Seconds(1);
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(status.state(), v1::FAILED) << "still " << v1::JobState_Name(status.state());
  EXPECT_GE(advanced, absl::Seconds(60));
  EXPECT_THAT(status.error(), HasSubstr("no live worker of device type cpu"));
  EXPECT_THAT(status.error(), HasSubstr("--no_worker_timeout"));
}

TEST(DeviceTypeTest, UnknownDeviceTypeIsRefusedAtSubmission) {
  auto h = CoordinatorHarness::Start(FastOptions());
  ASSERT_TRUE(h.ok()) << h.status();
  v1::JobSpec spec = SgdSpec(2, 1);
  spec.mutable_resources()->set_device_type("tpu");
  auto id = (*h)->Submit(spec);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("resources.device_type"));
}

}  // namespace
}  // namespace metatrain::testing
