#ifndef METATRAIN_COORDINATOR_WORKER_REGISTRY_H_
#define METATRAIN_COORDINATOR_WORKER_REGISTRY_H_

// The pool of connected workers, shared by every running job. Workers join and leave at
// any time; jobs take a snapshot at the start of each round of work.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "metatrain/v1/worker_service.pb.h"

namespace metatrain::coordinator {

// The coordinator's handle on one worker session, implemented by the RPC layer.
class WorkerConnection {
 public:
  virtual ~WorkerConnection() = default;
  // Queues `message` for delivery, in order. Never blocks. Thread-safe. Returns false
  // once the session is closed (the message is dropped).
  virtual bool Send(v1::CoordinatorMessage message) = 0;
  // The same for a CoordinatorMessage already serialised, whose bytes several sessions may
  // send at once without copying them: a step's Parameters, serialised once for every
  // worker (NOTE [Parameters serialised once] in worker_pool_source.h).
  virtual bool SendSerialized(std::shared_ptr<const std::string> message) = 0;
};

struct WorkerInfo {
  std::string id;
  v1::Hello hello;
  std::shared_ptr<WorkerConnection> connection;
  // Tasks per assignment: hello.capacity, at least 1.
  int64_t capacity = 1;
  // "cpu" or "cuda": the type of hello.device (meta::DeviceType).
  std::string device_type = "cpu";
};

// Whether a worker that says `hello` may join a coordinator of version `version`:
// FAILED_PRECONDITION naming both versions when hello.version differs (an empty one
// included: every metatrain-worker sends its version), since workers of another build may
// compute other bits; INVALID_ARGUMENT for a device that is not cpu, cuda or cuda:N.
absl::Status AdmitWorker(const v1::Hello& hello, const std::string& version);

// Thread-safe.
class WorkerRegistry {
 public:
  // Registers a worker that AdmitWorker(hello, Version()) accepts and returns its id
  // ("worker-<n>", never reused); otherwise returns that refusal and registers nothing. The
  // Welcome carrying the id is queued on `connection` before any job can see the worker,
  // so it is always the session's first message.
  absl::StatusOr<std::string> Add(const v1::Hello& hello,
                                  std::shared_ptr<WorkerConnection> connection)
      ABSL_LOCKS_EXCLUDED(mu_);
  // False if `id` is not registered.
  bool Remove(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  // Live workers in join order.
  std::vector<WorkerInfo> Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Keyed by join number.
  std::map<int64_t, WorkerInfo> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_WORKER_REGISTRY_H_
