#include "coordinator/rpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace metatrain::coordinator {

CoordinatorServer::CoordinatorServer(Coordinator* coordinator, const ServerSecurity& security)
    : coordinator_(coordinator),
      job_service_(coordinator, security.authorizer, security.max_queued_jobs_per_token),
      worker_service_(coordinator, security.authorizer) {}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const std::string& address, Coordinator* coordinator, int threads,
    absl::Duration worker_liveness, const ServerSecurity& security) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer(coordinator, security));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(
      address, security.credentials ? security.credentials : grpc::InsecureServerCredentials(),
      &server->port_);
  // gRPC sets SO_REUSEPORT by default, which lets any process of the same user bind the
  // same port and take a share of the connections (and lets two servers that ask for port
  // 0 end up on one port). The coordinator's port is its own.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&server->job_service_);
  builder.RegisterService(&server->worker_service_);
  // A worker that stops answering (a frozen or SIGSTOPped process, a crashed host, a cut
  // network) surfaces as a broken stream within about `worker_liveness`: the server pings
  // every half of it and gives up when a ping goes unanswered for the other half. Its
  // tasks then go to other workers (worker_pool_source.h). Workers may ping every 10 s.
  const int half_ms =
      static_cast<int>(std::max<int64_t>(500, absl::ToInt64Milliseconds(worker_liveness) / 2));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, half_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, half_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // Bounds on what one client can make the server hold (docs/security.md, "Limits"). The
  // largest legitimate message is a chunk of a tensor (under 1 MiB) or a job spec.
  builder.SetMaxReceiveMessageSize(coordinator->options().max_receive_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             coordinator->options().max_concurrent_streams);
  if (threads > 0) {
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, threads);
  }
  server->server_ = builder.BuildAndStart();
  if (!server->server_ || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  return server;
}

void CoordinatorServer::Shutdown(absl::Duration grace, Coordinator::WorkerFate fate) {
  if (shut_down_) return;
  shut_down_ = true;
  // Load balancers and health checks stop sending work before the jobs stop.
  if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
  coordinator_->Shutdown("coordinator shutting down", fate);
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
  }
}

void CoordinatorServer::Wait() {
  if (server_) server_->Wait();
}

}  // namespace metatrain::coordinator
