#ifndef METATRAIN_COMMON_TIME_CLOCK_H_
#define METATRAIN_COMMON_TIME_CLOCK_H_

// The one way the training loop, the job runner and the coordinator read time and wait for
// it, so that tests can drive time by hand (tests/testing/fake_clock.h) and exercise
// timeouts, reassignment and scheduling without sleeping, in the manner of LevelDB's Env.
//
// Thread safety: every method may be called from any thread.

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace metatrain {

class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() = 0;

  // Blocks until `condition` holds or Now() reaches `deadline`, releasing `mu` while it
  // waits (as absl::Mutex::AwaitWithDeadline does). `condition` is evaluated with `mu`
  // held. Returns whether `condition` holds on return.
  virtual bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& condition,
                                 absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;

  // Wall-clock time through absl; never destroyed.
  static Clock* Real();
};

}  // namespace metatrain

#endif  // METATRAIN_COMMON_TIME_CLOCK_H_
