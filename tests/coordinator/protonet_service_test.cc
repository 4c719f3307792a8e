// Prototypical networks through the service: the real coordinator and the real worker code
// (worker/: SessionClient over InnerLoopRunner) on loopback gRPC. The job, with higher-way
// training episodes, reaches the single-process trainer's bits with 1 and 2 workers, its
// validation and meta-test rounds (0 inner steps) are evaluations, and its checkpoints
// hold the embedding.

#include <gmock/gmock.h>
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

// 3-way tests, 5-way training episodes, a small conv net on 16x16 synthetic images; 5
// tasks a step so that 2 workers of capacity 2 shard them unevenly.
v1::JobSpec ProtoNetSpec() {
  v1::JobSpec spec;
  spec.set_name("protonet-test");
  spec.set_algorithm("protonet");
  spec.mutable_model()->set_kind("conv");
  spec.mutable_model()->set_filters(8);
  spec.mutable_tasks()->set_family("synthetic_images");
  spec.mutable_tasks()->set_ways(3);
  spec.mutable_tasks()->set_shots(1);
  spec.mutable_tasks()->set_query_size(2);
  spec.mutable_tasks()->set_image_size(16);
  spec.mutable_protonet()->set_train_ways(5);
  spec.set_meta_batch_size(5);
  spec.set_steps(4);
  spec.set_validation_interval(2);
  spec.set_validation_tasks(5);
  spec.set_test_tasks(7);
  spec.set_seed(77);
  return spec;
}

TEST(ProtoNetServiceTest, BitIdenticalWithOneAndTwoWorkersAndTheTrainer) {
  const v1::JobSpec spec = ProtoNetSpec();
  meta::JobContext context = MakeContext(spec);
  auto expected = meta::Train(context);
  ASSERT_TRUE(expected.ok()) << expected.status();
  // Nothing adapts: evaluation's before and after are the same classifier.
  EXPECT_EQ(expected->test.accuracy_before.mean, expected->test.accuracy_after.mean);
  EXPECT_EQ(expected->test.accuracy_after.n, 7);

  for (int num_workers : {1, 2}) {
    SCOPED_TRACE(absl::StrCat(num_workers, " worker(s)"));
    coordinator::CoordinatorOptions options;
    options.poll_interval = absl::Milliseconds(20);
    auto h = CoordinatorHarness::Start(options);
    ASSERT_TRUE(h.ok()) << h.status();
    std::vector<std::unique_ptr<LibraryWorker>> workers;
    for (int i = 0; i < num_workers; ++i) {
      worker::SessionOptions session;
      session.coordinator = (*h)->address();
      session.name = absl::StrCat("protonet-worker-", i);
      session.capacity = num_workers == 1 ? 100 : 2;
      session.verbose = false;
      workers.push_back(std::make_unique<LibraryWorker>(session, worker::RunnerOptions{}));
    }
    auto id = (*h)->Submit(spec);
    ASSERT_TRUE(id.ok()) << id.status();
    auto events = (*h)->WatchToEnd(*id, absl::Seconds(300));
    ASSERT_TRUE(events.ok()) << events.status();
    const v1::JobStatus status = events->back().status();
    ASSERT_EQ(status.state(), v1::SUCCEEDED) << status.error();
    EXPECT_EQ(status.step(), 4);

    auto final_bytes = (*h)->Fetch(*id, "final");
    auto best_bytes = (*h)->Fetch(*id, "best");
    ASSERT_TRUE(final_bytes.ok() && best_bytes.ok());
    ExpectBitIdentical(expected->final_params, ParamsFromCheckpoint(context, *final_bytes));
    ExpectBitIdentical(expected->best_params, ParamsFromCheckpoint(context, *best_bytes));
    // The checkpoint is the embedding: no head.
    auto state = meta::DeserializeStateDict(*final_bytes);
    ASSERT_TRUE(state.ok());
    EXPECT_EQ(state->size(), 16u);
    EXPECT_EQ(state->count("head.weight"), 0u);

    // Validation and meta-test ran as evaluations on the workers, with the trainer's numbers.
    ASSERT_EQ(status.validation_history_size(), 2);
    EXPECT_EQ(status.validation_history(1).result().accuracy_after().n(), 5);
    EXPECT_EQ(status.test().accuracy_after().n(), 7);
    EXPECT_EQ(status.test().accuracy_after().mean(), expected->test.accuracy_after.mean);
    EXPECT_EQ(status.test().loss_after().mean(), expected->test.loss_after.mean);
    EXPECT_EQ(status.test().loss_before().mean(), status.test().loss_after().mean());
    EXPECT_GE(status.train_accuracy(), 0);
  }
}

}  // namespace
}  // namespace metatrain::testing
