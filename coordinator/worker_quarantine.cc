#include "coordinator/worker_quarantine.h"

#include <algorithm>

namespace metatrain::coordinator {

absl::Time WorkerQuarantine::RecordFailure(const std::string& worker, absl::Time now) {
  if (options_.failures_to_quarantine <= 0) return absl::InfinitePast();
  absl::MutexLock lock(&mu_);
  Record& record = records_[worker];
  if (++record.failures_in_a_row < options_.failures_to_quarantine) return absl::InfinitePast();
  absl::Duration backoff = options_.backoff;
  for (int i = 0; i < record.quarantines && backoff < options_.max_backoff; ++i) backoff *= 2;
  backoff = std::min(backoff, options_.max_backoff);
  record.failures_in_a_row = 0;
  ++record.quarantines;
  record.until = now + backoff;
  return record.until;
}

void WorkerQuarantine::RecordSuccess(const std::string& worker) {
  absl::MutexLock lock(&mu_);
  records_.erase(worker);
}

bool WorkerQuarantine::IsQuarantined(const std::string& worker, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(worker);
  return it != records_.end() && now < it->second.until;
}

int WorkerQuarantine::CountQuarantined(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  int count = 0;
  for (const auto& [worker, record] : records_) count += now < record.until ? 1 : 0;
  return count;
}

}  // namespace metatrain::coordinator
