#include "coordinator/worker_quarantine.h"

#include <gtest/gtest.h>

namespace metatrain::coordinator {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000000);

QuarantineOptions Options() {
  QuarantineOptions options;
  options.failures_to_quarantine = 3;
  options.backoff = absl::Seconds(30);
  options.max_backoff = absl::Minutes(2);
  return options;
}

TEST(WorkerQuarantineTest, QuarantinesAfterTheThirdFailureInARowForTheBackoff) {
  WorkerQuarantine q(Options());
  EXPECT_EQ(q.RecordFailure("a", kStart), absl::InfinitePast());
  EXPECT_EQ(q.RecordFailure("a", kStart), absl::InfinitePast());
  EXPECT_FALSE(q.IsQuarantined("a", kStart));
  EXPECT_EQ(q.RecordFailure("a", kStart), kStart + absl::Seconds(30));
  EXPECT_TRUE(q.IsQuarantined("a", kStart + absl::Seconds(29)));
  EXPECT_FALSE(q.IsQuarantined("a", kStart + absl::Seconds(30)));
  EXPECT_FALSE(q.IsQuarantined("b", kStart));  // others are not touched
  EXPECT_EQ(q.CountQuarantined(kStart), 1);
}

TEST(WorkerQuarantineTest, ASuccessBetweenFailuresClearsTheCount) {
  WorkerQuarantine q(Options());
  q.RecordFailure("a", kStart);
  q.RecordFailure("a", kStart);
  q.RecordSuccess("a");
  EXPECT_EQ(q.RecordFailure("a", kStart), absl::InfinitePast());
  EXPECT_EQ(q.RecordFailure("a", kStart), absl::InfinitePast());
  EXPECT_FALSE(q.IsQuarantined("a", kStart));
}

TEST(WorkerQuarantineTest, RepeatedQuarantinesDoubleUpToTheCapAndASuccessResetsThem) {
  WorkerQuarantine q(Options());
  auto quarantine = [&](absl::Time now) {
    q.RecordFailure("a", now);
    q.RecordFailure("a", now);
    return q.RecordFailure("a", now) - now;
  };
  EXPECT_EQ(quarantine(kStart), absl::Seconds(30));
  EXPECT_EQ(quarantine(kStart), absl::Seconds(60));
  EXPECT_EQ(quarantine(kStart), absl::Seconds(120));
  EXPECT_EQ(quarantine(kStart), absl::Seconds(120));  // capped
  q.RecordSuccess("a");
  EXPECT_FALSE(q.IsQuarantined("a", kStart));
  EXPECT_EQ(quarantine(kStart), absl::Seconds(30));
}

TEST(WorkerQuarantineTest, ZeroFailuresTurnsItOff) {
  QuarantineOptions options = Options();
  options.failures_to_quarantine = 0;
  WorkerQuarantine q(options);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(q.RecordFailure("a", kStart), absl::InfinitePast());
  EXPECT_FALSE(q.IsQuarantined("a", kStart));
}

}  // namespace
}  // namespace metatrain::coordinator
