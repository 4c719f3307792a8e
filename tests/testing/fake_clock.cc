#include "tests/testing/fake_clock.h"

#include <vector>

namespace metatrain::testing {

FakeClock::FakeClock(absl::Time start) : now_ns_(absl::ToUnixNanos(start)) {}

absl::Time FakeClock::Now() { return absl::FromUnixNanos(now_ns_.load()); }

bool FakeClock::AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& condition,
                                  absl::Time deadline) {
  {
    absl::MutexLock lock(&waiters_mu_);
    ++waiters_[&mu];
  }
  // absl::Mutex re-evaluates the condition whenever `mu` is released; Advance() releases
  // it after moving time, which is what makes the deadline part of the condition fire.
  auto done = [&] { return condition.Eval() || Now() >= deadline; };
  mu.Await(absl::Condition(&done));
  {
    absl::MutexLock lock(&waiters_mu_);
    if (--waiters_[&mu] == 0) waiters_.erase(&mu);
  }
  return condition.Eval();
}

void FakeClock::Advance(absl::Duration by) {
  now_ns_.fetch_add(absl::ToInt64Nanoseconds(by));
  std::vector<absl::Mutex*> waiting;
  {
    absl::MutexLock lock(&waiters_mu_);
    for (const auto& [mu, count] : waiters_) waiting.push_back(mu);
  }
  // Taking and dropping each waiter's mutex makes it re-check its condition. waiters_mu_
  // is not held here: waiters take it while holding their own mutex.
  for (absl::Mutex* mu : waiting) {
    mu->Lock();
    mu->Unlock();
  }
}

int FakeClock::waiters() {
  absl::MutexLock lock(&waiters_mu_);
  int total = 0;
  for (const auto& [mu, count] : waiters_) total += count;
  return total;
}

}  // namespace metatrain::testing
