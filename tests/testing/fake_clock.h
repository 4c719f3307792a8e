#ifndef METATRAIN_TESTS_TESTING_FAKE_CLOCK_H_
#define METATRAIN_TESTS_TESTING_FAKE_CLOCK_H_

// A Clock that moves only when the test says so. Waits with a deadline end when the test
// advances the clock past it (or their condition holds), never by themselves, so a test of
// a timeout neither sleeps nor flakes.
//
// Thread-safe. The mutexes passed to AwaitWithDeadline must outlive any Advance() that
// runs while they are waited on.

#include <atomic>
#include <cstdint>
#include <map>

#include "absl/synchronization/mutex.h"
#include "common/time/clock.h"

namespace metatrain::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000));

  absl::Time Now() override;
  bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& condition,
                         absl::Time deadline) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Moves time forward and wakes every waiter so that it re-checks its deadline.
  void Advance(absl::Duration by);

  // How many AwaitWithDeadline calls are blocked right now: lets a test advance time only
  // once the code under test is really waiting.
  int waiters();

 private:
  std::atomic<int64_t> now_ns_;
  absl::Mutex waiters_mu_;
  std::map<absl::Mutex*, int> waiters_ ABSL_GUARDED_BY(waiters_mu_);
};

}  // namespace metatrain::testing

#endif  // METATRAIN_TESTS_TESTING_FAKE_CLOCK_H_
