#include "coordinator/rpc/worker_service.h"

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace metatrain::coordinator {
namespace {

class SessionReactor;

// The coordinator's handle on a session. It outlives the reactor (jobs may hold it), so
// the reactor detaches itself in OnDone and later sends fail.
class SessionOutbox final : public WorkerConnection {
 public:
  explicit SessionOutbox(SessionReactor* reactor) : reactor_(reactor) {}
  bool Send(v1::CoordinatorMessage message) override;

  // Reactor side.
  // The write at the front completed (`ok`: delivered). Returns the next message to
  // write, or null; sets *finish when the stream should now be finished.
  const v1::CoordinatorMessage* WriteDone(bool ok, bool* finish);
  // No more messages will be accepted; *finish as above.
  void Close(bool* finish);
  void Detach();

 private:
  std::mutex mu_;
  SessionReactor* reactor_;                   // GUARDED_BY(mu_), null once detached
  std::deque<v1::CoordinatorMessage> queue_;  // GUARDED_BY(mu_); front is being written
  bool writing_ = false;                      // GUARDED_BY(mu_)
  bool closed_ = false;                       // GUARDED_BY(mu_)
  bool finish_requested_ = false;             // GUARDED_BY(mu_)
};

class SessionReactor final
    : public grpc::ServerBidiReactor<v1::WorkerMessage, v1::CoordinatorMessage> {
 public:
  explicit SessionReactor(Coordinator* coordinator)
      : coordinator_(coordinator), outbox_(std::make_shared<SessionOutbox>(this)) {
    StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return EndSession(grpc::Status::OK);
    std::string worker_id;
    {
      // OnCancel may run concurrently: a worker is registered only if it has not left.
      std::lock_guard<std::mutex> lock(leave_mu_);
      if (left_) return Close(grpc::Status::CANCELLED);
      if (worker_id_.empty()) {
        if (!incoming_.has_hello()) {
          left_ = true;
          return Close(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "the first message of a session must be Hello"));
        }
        worker_id_ = coordinator_->AddWorker(incoming_.hello(), outbox_);
      } else if (incoming_.has_hello()) {
        return EndSessionLocked(
            grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "Hello sent twice in one session"));
      } else {
        worker_id = worker_id_;
      }
    }
    if (!worker_id.empty()) coordinator_->OnWorkerMessage(worker_id, std::move(incoming_));
    incoming_.Clear();
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    const v1::CoordinatorMessage* next = outbox_->WriteDone(ok, &finish);
    if (next) StartWrite(next);
    if (finish) Finish(final_status_);
  }

  void OnCancel() override {
    Leave();
    bool finish = false;
    outbox_->Close(&finish);
    if (finish) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    Leave();
    outbox_->Detach();
    delete this;
  }

  // Called by the outbox, outside its lock, for the first write after an idle period.
  void Write(const v1::CoordinatorMessage* message) { StartWrite(message); }

 private:
  void Leave() {
    std::lock_guard<std::mutex> lock(leave_mu_);
    LeaveLocked();
  }

  void LeaveLocked() {
    if (!left_ && !worker_id_.empty()) coordinator_->RemoveWorker(worker_id_);
    left_ = true;
  }

  void EndSessionLocked(grpc::Status status) {
    LeaveLocked();
    Close(std::move(status));
  }

  void EndSession(grpc::Status status) {
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
  v1::WorkerMessage incoming_;
  // Set by the read path, final_status_ before Finish (once).
  grpc::Status final_status_;
  std::mutex leave_mu_;
  std::string worker_id_;  // GUARDED_BY(leave_mu_)
  bool left_ = false;      // GUARDED_BY(leave_mu_)
};

bool SessionOutbox::Send(v1::CoordinatorMessage message) {
  SessionReactor* reactor = nullptr;
  const v1::CoordinatorMessage* first = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || reactor_ == nullptr) return false;
    queue_.push_back(std::move(message));
    if (!writing_) {
      writing_ = true;
      reactor = reactor_;
      first = &queue_.front();
    }
  }
  // While writing_ is set the stream cannot be finished, so the reactor is alive here.
  if (reactor) reactor->Write(first);
  return true;
}

const v1::CoordinatorMessage* SessionOutbox::WriteDone(bool ok, bool* finish) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.pop_front();
  if (!ok) {
    closed_ = true;
    queue_.clear();
  }
  if (!queue_.empty() && !closed_) return &queue_.front();
  writing_ = false;
  *finish = closed_ && !finish_requested_;
  if (*finish) finish_requested_ = true;
  return nullptr;
}

void SessionOutbox::Close(bool* finish) {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  // Queued messages are dropped; the one being written completes first.
  if (writing_) {
    while (queue_.size() > 1) queue_.pop_back();
  }
  *finish = !writing_ && !finish_requested_;
  if (*finish) finish_requested_ = true;
}

void SessionOutbox::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  reactor_ = nullptr;
  closed_ = true;
  queue_.clear();
}

}  // namespace

grpc::ServerBidiReactor<v1::WorkerMessage, v1::CoordinatorMessage>* WorkerServiceImpl::Session(
    grpc::CallbackServerContext*) {
  return new SessionReactor(coordinator_);
}

}  // namespace metatrain::coordinator
