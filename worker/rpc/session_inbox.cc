#include "worker/rpc/session_inbox.h"

#include <utility>

namespace metatrain::worker {

bool SessionInbox::Push(v1::CoordinatorMessage message) {
  absl::MutexLock lock(&mu_);
  if (message.has_cancel()) {
    if (message.cancel().assignment_id() == popped_assignment_) popped_cancelled_ = true;
    for (Item& item : queue_) {
      if (item.message.has_assignment() &&
          item.message.assignment().assignment_id() == message.cancel().assignment_id()) {
        item.cancelled = true;
      }
    }
    return !closed_;
  }
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || queue_.empty() || bytes_ < max_bytes_;
  };
  mu_.Await(absl::Condition(&room));
  if (closed_) return false;
  const auto size = static_cast<int64_t>(message.ByteSizeLong());
  queue_.push_back(Item{std::move(message), false});
  sizes_.push_back(size);
  bytes_ += size;
  return true;
}

std::optional<SessionInbox::Item> SessionInbox::Pop() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || !queue_.empty(); };
  mu_.Await(absl::Condition(&ready));
  while (!queue_.empty()) {
    Item item = std::move(queue_.front());
    queue_.pop_front();
    bytes_ -= sizes_.front();
    sizes_.pop_front();
    if (closed_ && item.message.has_assignment()) continue;
    if (item.message.has_assignment()) {
      popped_assignment_ = item.message.assignment().assignment_id();
      popped_cancelled_ = false;
    }
    return item;
  }
  return std::nullopt;
}

void SessionInbox::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

bool SessionInbox::CancelRequested(int64_t assignment_id) const {
  absl::MutexLock lock(&mu_);
  return popped_cancelled_ && popped_assignment_ == assignment_id;
}

bool SessionInbox::empty() const {
  absl::MutexLock lock(&mu_);
  return queue_.empty();
}

int64_t SessionInbox::queued_bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

}  // namespace metatrain::worker
