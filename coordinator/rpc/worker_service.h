#ifndef METATRAIN_COORDINATOR_RPC_WORKER_SERVICE_H_
#define METATRAIN_COORDINATOR_RPC_WORKER_SERVICE_H_

// v1.WorkerService over the Coordinator, on gRPC's callback API. Each Session is one
// ServerBidiReactor with one read and one write in flight and a queue of outgoing
// messages; its callbacks never block: they hand incoming messages to the Coordinator
// (which queues them for the job's runner) and start the next read or write.
// Protocol (worker_service.proto): the first message must be Hello (else the stream ends
// with FAILED_PRECONDITION); a Hello that the coordinator refuses (another version: also
// FAILED_PRECONDITION; an unreadable device: INVALID_ARGUMENT) ends the stream with that
// status; otherwise Welcome is always the first message sent back. Before any of that, a
// session the Authorizer refuses (no or an unknown join token, no client certificate under
// mutual TLS) ends at once with UNAUTHENTICATED, having read nothing.

#include "coordinator/coordinator.h"
#include "coordinator/rpc/auth.h"
#include "metatrain/v1/worker_service.grpc.pb.h"

namespace metatrain::coordinator {

// Session is registered raw (serialised bytes in and out, parsed here): NOTE [Parameters
// serialised once] in coordinator/worker_pool_source.h.
class WorkerServiceImpl final
    : public v1::WorkerService::WithRawCallbackMethod_Session<v1::WorkerService::Service> {
 public:
  // `coordinator` and `authorizer` must outlive the service; a null `authorizer` lets
  // every worker in.
  explicit WorkerServiceImpl(Coordinator* coordinator, const Authorizer* authorizer = nullptr)
      : coordinator_(coordinator), authorizer_(authorizer) {}

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Session(
      grpc::CallbackServerContext* context) override;

 private:
  Coordinator* const coordinator_;
  const Authorizer* const authorizer_;
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_RPC_WORKER_SERVICE_H_
