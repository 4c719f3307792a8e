#ifndef METATRAIN_COORDINATOR_WORKER_QUARANTINE_H_
#define METATRAIN_COORDINATOR_WORKER_QUARANTINE_H_

// Keeps workers that fail again and again away from every job for a while.
//
// NOTE [Quarantine]. Within a round, a worker whose result is refused or that misses its
// deadline already sits out the rest of that round (NOTE [Work distribution]). A worker
// that is broken for good (a bad GPU, a corrupt data copy) would still be picked at the
// start of every round of every job, cost a failed attempt each time and, with
// max_task_attempts, could fail jobs that healthy workers would finish. So failures are
// counted per worker across rounds and jobs: after `failures_to_quarantine` failures in a
// row (no completed assignment in between) the worker is left out of every job for
// `backoff`, doubled on each further quarantine without a success in between, up to
// `max_backoff`. A completed assignment clears the record. Workers are known by their
// name (Hello.name; metatrain-worker's default is hostname:pid), so a worker that
// reconnects is still the same worker; the session id stands in when the name is empty.

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace metatrain::coordinator {

struct QuarantineOptions {
  // Failures in a row that quarantine a worker; 0 turns quarantine off.
  int failures_to_quarantine = 3;
  absl::Duration backoff = absl::Seconds(30);
  absl::Duration max_backoff = absl::Minutes(10);
};

// Thread-safe; every call is a map lookup under a short lock.
class WorkerQuarantine {
 public:
  explicit WorkerQuarantine(QuarantineOptions options) : options_(options) {}

  // Counts a refused result or a missed deadline of `worker` at `now`. Returns the end of
  // the quarantine this failure starts, or InfinitePast() when it starts none.
  absl::Time RecordFailure(const std::string& worker, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // The worker completed an assignment: its record is cleared.
  void RecordSuccess(const std::string& worker) ABSL_LOCKS_EXCLUDED(mu_);
  bool IsQuarantined(const std::string& worker, absl::Time now) const ABSL_LOCKS_EXCLUDED(mu_);
  // Workers in quarantine at `now`.
  int CountQuarantined(absl::Time now) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Record {
    int failures_in_a_row = 0;
    // Quarantines since the last success: the next one lasts backoff * 2^quarantines.
    int quarantines = 0;
    absl::Time until = absl::InfinitePast();
  };

  const QuarantineOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, Record> records_ ABSL_GUARDED_BY(mu_);
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_WORKER_QUARANTINE_H_
