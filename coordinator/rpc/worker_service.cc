#include "coordinator/rpc/worker_service.h"

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status/grpc_status.h"

namespace metatrain::coordinator {
namespace {

class SessionReactor;

// A slice over shared serialised bytes: no copy; the bytes live until gRPC has sent the
// last stream's copy of the slice.
grpc::ByteBuffer SharedBuffer(std::shared_ptr<const std::string> bytes) {
  auto* owner = new std::shared_ptr<const std::string>(std::move(bytes));
  grpc::Slice slice(
      const_cast<char*>((*owner)->data()), (*owner)->size(),
      [](void* p) { delete static_cast<std::shared_ptr<const std::string>*>(p); }, owner);
  return grpc::ByteBuffer(&slice, 1);
}

// The coordinator's handle on a session. It outlives the reactor (jobs may hold it), so
// the reactor detaches itself in OnDone and later sends fail.
class SessionOutbox final : public WorkerConnection {
 public:
  SessionOutbox(SessionReactor* reactor, Coordinator* coordinator)
      : coordinator_(coordinator), reactor_(reactor) {}
  bool Send(v1::CoordinatorMessage message) override ABSL_LOCKS_EXCLUDED(mu_);
  bool SendSerialized(std::shared_ptr<const std::string> message) override ABSL_LOCKS_EXCLUDED(mu_);

  // Reactor side.
  // The write at the front completed (`ok`: delivered). Returns the next message to
  // write, or null; sets *finish when the stream should now be finished.
  const grpc::ByteBuffer* WriteDone(bool ok, bool* finish) ABSL_LOCKS_EXCLUDED(mu_);
  // No more messages will be accepted; *finish as above.
  void Close(bool* finish) ABSL_LOCKS_EXCLUDED(mu_);
  void Detach() ABSL_LOCKS_EXCLUDED(mu_);
  // More was queued than max_worker_outbox_bytes: the session ends with RESOURCE_EXHAUSTED.
  bool overflowed() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return overflowed_;
  }

 private:
  bool Enqueue(grpc::ByteBuffer message) ABSL_LOCKS_EXCLUDED(mu_);

  Coordinator* const coordinator_;
  mutable absl::Mutex mu_;
  SessionReactor* reactor_ ABSL_GUARDED_BY(mu_);  // null once detached
  // The front is being written. Bounded by bytes: CoordinatorOptions::max_worker_outbox_bytes.
  std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<int64_t> sizes_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
};

// The session reads and writes serialised messages (the method is registered raw), so that
// one serialisation of a step's parameters serves every worker (SendSerialized); it parses
// what it reads itself.
class SessionReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit SessionReactor(Coordinator* coordinator)
      : coordinator_(coordinator), outbox_(std::make_shared<SessionOutbox>(this, coordinator)) {
    StartRead(&incoming_bytes_);
  }

  void OnReadDone(bool ok) override ABSL_LOCKS_EXCLUDED(leave_mu_) {
    if (!ok) return EndSession(grpc::Status::OK);
    coordinator_->CountSessionBytes(static_cast<int64_t>(incoming_bytes_.Length()), 0);
    incoming_.Clear();
    if (!grpc::SerializationTraits<v1::WorkerMessage>::Deserialize(&incoming_bytes_, &incoming_)
             .ok()) {
      return EndSession(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unparseable WorkerMessage"));
    }
    std::string worker_id;
    {
      // OnCancel may run concurrently: a worker is registered only if it has not left.
      absl::MutexLock lock(&leave_mu_);
      if (left_) return Close(grpc::Status::CANCELLED);
      if (worker_id_.empty()) {
        if (!incoming_.has_hello()) {
          left_ = true;
          return Close(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "the first message of a session must be Hello"));
        }
        auto added = coordinator_->AddWorker(incoming_.hello(), outbox_);
        if (!added.ok()) {
          left_ = true;
          return Close(ToGrpcStatus(added.status()));
        }
        worker_id_ = *std::move(added);
      } else if (incoming_.has_hello()) {
        return EndSessionLocked(
            grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "Hello sent twice in one session"));
      } else {
        worker_id = worker_id_;
      }
    }
    if (!worker_id.empty()) coordinator_->OnWorkerMessage(worker_id, std::move(incoming_));
    incoming_bytes_.Clear();
    StartRead(&incoming_bytes_);
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    const grpc::ByteBuffer* next = outbox_->WriteDone(ok, &finish);
    if (next) StartWrite(next);
    if (finish) {
      Finish(outbox_->overflowed()
                 ? grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "the worker fell too far behind reading its messages "
                                "(--max_worker_outbox_mb); reconnect")
                 : final_status_);
    }
  }

  void OnCancel() override ABSL_LOCKS_EXCLUDED(leave_mu_) {
    Leave();
    bool finish = false;
    outbox_->Close(&finish);
    if (finish) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override ABSL_LOCKS_EXCLUDED(leave_mu_) {
    Leave();
    outbox_->Detach();
    delete this;
  }

  // Called by the outbox, outside its lock, for the first write after an idle period.
  void Write(const grpc::ByteBuffer* message) { StartWrite(message); }

 private:
  void Leave() ABSL_LOCKS_EXCLUDED(leave_mu_) {
    absl::MutexLock lock(&leave_mu_);
    LeaveLocked();
  }

  void LeaveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(leave_mu_) {
    if (!left_ && !worker_id_.empty()) coordinator_->RemoveWorker(worker_id_);
    left_ = true;
  }

  void EndSessionLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(leave_mu_) {
    LeaveLocked();
    Close(std::move(status));
  }

  void EndSession(grpc::Status status) ABSL_LOCKS_EXCLUDED(leave_mu_) {
    Leave();
    Close(std::move(status));
  }

  void Close(grpc::Status status) {
    final_status_ = std::move(status);
    bool finish = false;
    outbox_->Close(&finish);
    if (finish) Finish(final_status_);
  }

  Coordinator* const coordinator_;
  std::shared_ptr<SessionOutbox> outbox_;
  grpc::ByteBuffer incoming_bytes_;
  v1::WorkerMessage incoming_;
  // Set by the read path, final_status_ before Finish (once).
  grpc::Status final_status_;
  absl::Mutex leave_mu_;
  std::string worker_id_ ABSL_GUARDED_BY(leave_mu_);
  bool left_ ABSL_GUARDED_BY(leave_mu_) = false;
};

bool SessionOutbox::Send(v1::CoordinatorMessage message) {
  grpc::ByteBuffer buffer;
  bool own_buffer = false;
  if (!grpc::SerializationTraits<v1::CoordinatorMessage>::Serialize(message, &buffer, &own_buffer)
           .ok()) {
    return false;  // unreachable for a valid message; dropped like a closed session's
  }
  return Enqueue(std::move(buffer));
}

bool SessionOutbox::SendSerialized(std::shared_ptr<const std::string> message) {
  return Enqueue(SharedBuffer(std::move(message)));
}

bool SessionOutbox::Enqueue(grpc::ByteBuffer message) {
  SessionReactor* reactor = nullptr;
  const grpc::ByteBuffer* first = nullptr;
  const auto bytes = static_cast<int64_t>(message.Length());
  {
    absl::MutexLock lock(&mu_);
    if (closed_ || reactor_ == nullptr) return false;
    if (bytes_ + bytes > coordinator_->options().max_worker_outbox_bytes && writing_) {
      // The worker is not reading (a frozen or overloaded process): stop queueing for it.
      // The write in progress completes or fails, and then the stream is finished
      // (OnWriteDone), which ends the worker's session; its tasks go elsewhere.
      overflowed_ = true;
      closed_ = true;
      while (queue_.size() > 1) {
        queue_.pop_back();
        bytes_ -= sizes_.back();
        sizes_.pop_back();
      }
      return false;
    }
    queue_.push_back(std::move(message));
    sizes_.push_back(bytes);
    bytes_ += bytes;
    if (!writing_) {
      writing_ = true;
      reactor = reactor_;
      first = &queue_.front();
    }
  }
  coordinator_->CountSessionBytes(0, bytes);
  // While writing_ is set the stream cannot be finished, so the reactor is alive here.
  if (reactor) reactor->Write(first);
  return true;
}

const grpc::ByteBuffer* SessionOutbox::WriteDone(bool ok, bool* finish) {
  absl::MutexLock lock(&mu_);
  queue_.pop_front();
  bytes_ -= sizes_.front();
  sizes_.pop_front();
  if (!ok) {
    closed_ = true;
    queue_.clear();
    sizes_.clear();
    bytes_ = 0;
  }
  if (!queue_.empty() && !closed_) return &queue_.front();
  writing_ = false;
  *finish = closed_ && !finish_requested_;
  if (*finish) finish_requested_ = true;
  return nullptr;
}

void SessionOutbox::Close(bool* finish) {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  // Queued messages are dropped; the one being written completes first.
  if (writing_) {
    while (queue_.size() > 1) {
      queue_.pop_back();
      bytes_ -= sizes_.back();
      sizes_.pop_back();
    }
  }
  *finish = !writing_ && !finish_requested_;
  if (*finish) finish_requested_ = true;
}

void SessionOutbox::Detach() {
  absl::MutexLock lock(&mu_);
  reactor_ = nullptr;
  closed_ = true;
  queue_.clear();
  sizes_.clear();
  bytes_ = 0;
}

// A session refused before it starts: finishes with `status`, reading nothing.
class RefusedReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit RefusedReactor(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* WorkerServiceImpl::Session(
    grpc::CallbackServerContext* context) {
  if (authorizer_ != nullptr) {
    static const std::string method =
        absl::StrCat("/", v1::WorkerService::service_full_name(), "/Session");
    auto authorized = authorizer_->Authorize(*context, method);
    if (!authorized.ok()) return new RefusedReactor(ToGrpcStatus(authorized.status()));
  }
  return new SessionReactor(coordinator_);
}

}  // namespace metatrain::coordinator
