#ifndef METATRAIN_COORDINATOR_RPC_SERVER_H_
#define METATRAIN_COORDINATOR_RPC_SERVER_H_

// The coordinator's gRPC server: JobService, WorkerService, the standard health service
// and server reflection, on one port. Transport credentials and who may call what come in
// ServerSecurity (docs/security.md); health and reflection are open to anyone who can
// complete the (TLS) handshake, so that probes and grpcurl need no token.

#include <grpcpp/server.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/coordinator.h"
#include "coordinator/rpc/auth.h"
#include "coordinator/rpc/job_service.h"
#include "coordinator/rpc/worker_service.h"

namespace metatrain::coordinator {

struct ServerSecurity {
  // Null: plaintext (what in-process tests use; the binary requires TLS or --insecure).
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Null: every caller may call every RPC. Must outlive the server.
  const Authorizer* authorizer = nullptr;
  // > 0: jobs one token may have QUEUED at once (--max_queued_jobs_per_token).
  int max_queued_jobs_per_token = 0;
};

class CoordinatorServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks a free one). `coordinator` must
  // outlive the server. `threads` > 0 caps the synchronous-API pollers. A worker whose
  // connection stays silent for about `worker_liveness` is dropped (HTTP/2 keepalive).
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const std::string& address, Coordinator* coordinator, int threads = 0,
      absl::Duration worker_liveness = absl::Seconds(20), const ServerSecurity& security = {});
  ~CoordinatorServer();

  int port() const { return port_; }

  // Reports NOT_SERVING on the health service, stops the coordinator's jobs (each leaves a
  // resume point), tells workers per `fate`, then closes every stream (waiting up to `grace`
  // for them to end by themselves). Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(2),
                Coordinator::WorkerFate fate = Coordinator::WorkerFate::kExit);

  // Blocks until the server has shut down.
  void Wait();

 private:
  CoordinatorServer(Coordinator* coordinator, const ServerSecurity& security);

  Coordinator* const coordinator_;
  JobServiceImpl job_service_;
  WorkerServiceImpl worker_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_RPC_SERVER_H_
