#ifndef METATRAIN_WORKER_RPC_SESSION_INBOX_H_
#define METATRAIN_WORKER_RPC_SESSION_INBOX_H_

// The queue between a worker session's reader thread and its compute thread.
//
// The worker reads the coordinator's messages on one thread and computes on another, so
// that a CancelAssignment reaches an assignment still waiting behind the one being
// computed (NOTE [Cancelled assignments], coordinator/worker_pool_source.h). A cancel is
// applied here, on arrival: the queued assignment is marked, and the compute thread
// answers it without computing. A cancel for the assignment being computed is noted
// (CancelRequested): the computation stops before its next compute group. A cancel for an
// assignment already done changes nothing.
//
// Bounded by bytes: Push blocks while the queue holds more than `max_bytes` (a single
// larger message is still taken when the queue is empty), so a worker that computes
// slower than the coordinator sends stops reading, and gRPC's flow control holds the
// coordinator back instead of this process's memory growing.
//
// Thread-safe: one producer (Push, Close) and one consumer (Pop) in practice.

#include <cstdint>
#include <deque>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "metatrain/v1/worker_service.pb.h"

namespace metatrain::worker {

class SessionInbox {
 public:
  struct Item {
    v1::CoordinatorMessage message;
    // An Assignment that the coordinator cancelled before the worker started it.
    bool cancelled = false;
  };

  explicit SessionInbox(int64_t max_bytes) : max_bytes_(max_bytes) {}

  // Queues `message`, or applies it when it is a CancelAssignment. Blocks while the queue
  // is full; returns false (dropping the message) once the inbox is closed.
  bool Push(v1::CoordinatorMessage message) ABSL_LOCKS_EXCLUDED(mu_);
  // The next item; blocks while the queue is empty and open. After Close, the items left
  // are still returned, except assignments (the session that would take their results is
  // gone); nullopt once nothing is left.
  std::optional<Item> Pop() ABSL_LOCKS_EXCLUDED(mu_);
  // No more messages: the stream ended, or the consumer stopped. Wakes both sides.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

  int64_t queued_bytes() const ABSL_LOCKS_EXCLUDED(mu_);
  // Nothing to Pop without waiting (closed or not).
  bool empty() const ABSL_LOCKS_EXCLUDED(mu_);

  // A CancelAssignment for `assignment_id` arrived after Pop returned it (it is being
  // computed). Thread-safe; for the compute thread, between compute groups.
  bool CancelRequested(int64_t assignment_id) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const int64_t max_bytes_;
  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<int64_t> sizes_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // The assignment Pop returned last, and whether a cancel for it arrived since.
  int64_t popped_assignment_ ABSL_GUARDED_BY(mu_) = -1;
  bool popped_cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace metatrain::worker

#endif  // METATRAIN_WORKER_RPC_SESSION_INBOX_H_
