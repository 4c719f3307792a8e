#include "tests/testing/library_worker.h"

#include <utility>

namespace metatrain::testing {

LibraryWorker::LibraryWorker(worker::SessionOptions session, worker::RunnerOptions runner) {
  runner_ = std::make_unique<worker::InnerLoopRunner>(std::move(runner));
  client_ = std::make_unique<worker::SessionClient>(std::move(session), runner_.get());
  thread_ = std::thread([this] {
    absl::Status status = client_->Run();
    absl::MutexLock lock(&mu_);
    status_ = std::move(status);
    exited_ = true;
  });
}

LibraryWorker::~LibraryWorker() { Stop(); }

void LibraryWorker::Stop() {
  client_->Stop();
  if (thread_.joinable()) thread_.join();
}

absl::Status LibraryWorker::WaitForExit(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithTimeout(absl::Condition(&exited_), timeout)) {
    return absl::DeadlineExceededError("the worker is still running");
  }
  return status_;
}

}  // namespace metatrain::testing
