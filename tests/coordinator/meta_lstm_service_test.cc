// Meta-LSTM through the service: the coordinator and real workers (the worker library
// over real gRPC on loopback) run a meta_lstm job exactly like a MAML job, and the
// meta-parameters (the learner's initialisation and the meta-learner's weights) are
// bit-identical with one worker, with two, and with the single-process trainer.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/coordinator/test_specs.h"
#include "tests/testing/coordinator_harness.h"
#include "tests/testing/library_worker.h"

namespace metatrain::testing {
namespace {

meta::TensorList RunOnWorkers(const v1::JobSpec& spec, int num_workers, const std::string& which) {
  coordinator::CoordinatorOptions options;
  options.poll_interval = absl::Milliseconds(20);
  auto h = CoordinatorHarness::Start(options);
  EXPECT_TRUE(h.ok()) << h.status();
  if (!h.ok()) return {};
  std::vector<std::unique_ptr<LibraryWorker>> workers;
  for (int i = 0; i < num_workers; ++i) {
    worker::SessionOptions session;
    session.coordinator = (*h)->address();
    session.name = absl::StrCat("meta-lstm-worker-", i);
    // 4 tasks per step: with two workers both take part in every round.
    session.capacity = num_workers == 1 ? 4 : 2;
    session.verbose = false;
    workers.push_back(std::make_unique<LibraryWorker>(session, worker::RunnerOptions()));
  }
  auto id = (*h)->Submit(spec);
  EXPECT_TRUE(id.ok()) << id.status();
  if (!id.ok()) return {};
  auto events = (*h)->WatchToEnd(*id, absl::Seconds(300));
  EXPECT_TRUE(events.ok()) << events.status();
  if (!events.ok()) return {};
  const v1::JobStatus status = events->back().status();
  EXPECT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  auto bytes = (*h)->Fetch(*id, which);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  if (!bytes.ok()) return {};
  return ParamsFromCheckpoint(MakeContext(spec), *bytes);
}

void ExpectSameBitsWithOneAndTwoWorkers(const v1::JobSpec& spec) {
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok()) << expected.status();
  // The job really trained the meta-learner, not only the initialisation.
  auto initial = meta::InitialMetaParams(context);
  ASSERT_TRUE(initial.ok());
  const auto& specs = context.learner->meta_param_specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].name == "metalstm.cell.bI") {
      EXPECT_FALSE(at::equal((*initial)[i], expected->final_params[i]));
    }
  }
  for (int workers : {1, 2}) {
    SCOPED_TRACE(absl::StrCat(workers, " worker(s)"));
    const meta::TensorList got = RunOnWorkers(spec, workers, "final");
    ExpectBitIdentical(expected->final_params, got);
  }
}

TEST(MetaLstmServiceTest, SinusoidJobHasTheSameBitsWithOneAndTwoWorkers) {
  v1::JobSpec spec = SmallSinusoidSpec("meta_lstm", /*steps=*/4);
  spec.mutable_model()->add_hidden_sizes(16);
  spec.mutable_inner()->set_steps(3);
  ExpectSameBitsWithOneAndTwoWorkers(spec);
}

TEST(MetaLstmServiceTest, ImageJobHasTheSameBitsWithOneAndTwoWorkers) {
  v1::JobSpec spec = SmallImageSpec(/*steps=*/3, /*seed=*/21);
  spec.set_algorithm("meta_lstm");
  spec.mutable_inner()->set_steps(2);
  spec.mutable_meta_lstm()->set_hidden_size(6);
  ExpectSameBitsWithOneAndTwoWorkers(spec);
}

}  // namespace
}  // namespace metatrain::testing
