#include "coordinator/worker_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/job_spec.h"
#include "common/status/status_macros.h"
#include "common/version/version.h"

namespace metatrain::coordinator {

absl::Status AdmitWorker(const v1::Hello& hello, const std::string& version) {
  if (hello.version() != version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker version \"", hello.version(), "\" differs from the coordinator's version \"",
        version, "\": run workers of the coordinator's release"));
  }
  return meta::DeviceType(hello.device()).status();
}

absl::StatusOr<std::string> WorkerRegistry::Add(const v1::Hello& hello,
                                                std::shared_ptr<WorkerConnection> connection) {
  RETURN_IF_ERROR(AdmitWorker(hello, Version()));
  auto device_type = meta::DeviceType(hello.device());
  absl::MutexLock lock(&mu_);
  const int64_t n = next_id_++;
  WorkerInfo& info = workers_[n];
  info.id = absl::StrCat("worker-", n);
  info.hello = hello;
  info.connection = std::move(connection);
  info.capacity = std::max<int64_t>(1, hello.capacity());
  info.device_type = *device_type;
  v1::CoordinatorMessage welcome;
  welcome.mutable_welcome()->set_worker_id(info.id);
  info.connection->Send(std::move(welcome));
  return info.id;
}

bool WorkerRegistry::Remove(const std::string& id) {
  absl::MutexLock lock(&mu_);
  for (auto it = workers_.begin(); it != workers_.end(); ++it) {
    if (it->second.id == id) {
      workers_.erase(it);
      return true;
    }
  }
  return false;
}

std::vector<WorkerInfo> WorkerRegistry::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerInfo> out;
  out.reserve(workers_.size());
  for (const auto& [n, info] : workers_) out.push_back(info);
  return out;
}

int64_t WorkerRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(workers_.size());
}

}  // namespace metatrain::coordinator
