#include "tests/testing/coordinator_harness.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"

namespace metatrain::testing {
namespace {

void SetDeadline(grpc::ClientContext& context, absl::Duration d) {
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorHarness>> CoordinatorHarness::Start(
    coordinator::CoordinatorOptions options) {
  std::unique_ptr<CoordinatorHarness> h(new CoordinatorHarness());
  h->coordinator_ = std::make_unique<coordinator::Coordinator>(std::move(options));
  RETURN_IF_ERROR(h->coordinator_->Start());
  ASSIGN_OR_RETURN(h->server_,
                   coordinator::CoordinatorServer::Start("127.0.0.1:0", h->coordinator_.get()));
  h->address_ = absl::StrCat("127.0.0.1:", h->server_->port());
  h->channel_ = grpc::CreateChannel(h->address_, grpc::InsecureChannelCredentials());
  h->stub_ = v1::JobService::NewStub(h->channel_);
  return h;
}

CoordinatorHarness::~CoordinatorHarness() { Shutdown(); }

void CoordinatorHarness::Shutdown() {
  if (server_) server_->Shutdown();
  if (coordinator_) coordinator_->Shutdown();
}

absl::StatusOr<std::string> CoordinatorHarness::Submit(const v1::JobSpec& spec) {
  grpc::ClientContext context;
  SetDeadline(context, absl::Seconds(60));
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  v1::SubmitJobResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->SubmitJob(&context, request, &response)));
  return response.job_id();
}

absl::StatusOr<v1::JobStatus> CoordinatorHarness::Get(const std::string& job_id) {
  grpc::ClientContext context;
  SetDeadline(context, absl::Seconds(60));
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::JobStatus response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->GetJob(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::JobStatus> CoordinatorHarness::Cancel(const std::string& job_id) {
  grpc::ClientContext context;
  SetDeadline(context, absl::Seconds(60));
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::CancelJobResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->CancelJob(&context, request, &response)));
  return response.status();
}

absl::StatusOr<bool> CoordinatorHarness::WatchUntil(
    const std::string& job_id, const std::function<bool(const v1::JobEvent&)>& until,
    absl::Duration deadline) {
  grpc::ClientContext context;
  SetDeadline(context, deadline);
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  auto reader = stub_->WatchJob(&context, request);
  v1::JobEvent event;
  while (reader->Read(&event)) {
    if (until(event)) {
      context.TryCancel();
      reader->Finish();
      return true;
    }
  }
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  return false;
}

absl::StatusOr<std::vector<v1::JobEvent>> CoordinatorHarness::WatchToEnd(const std::string& job_id,
                                                                         absl::Duration deadline) {
  std::vector<v1::JobEvent> events;
  ASSIGN_OR_RETURN(bool stopped, WatchUntil(
                                     job_id,
                                     [&](const v1::JobEvent& e) {
                                       events.push_back(e);
                                       return false;
                                     },
                                     deadline));
  (void)stopped;
  return events;
}

absl::StatusOr<std::string> CoordinatorHarness::Fetch(const std::string& job_id,
                                                      const std::string& which) {
  grpc::ClientContext context;
  SetDeadline(context, absl::Seconds(60));
  v1::FetchCheckpointRequest request;
  request.set_job_id(job_id);
  request.set_which(which);
  auto reader = stub_->FetchCheckpoint(&context, request);
  std::string bytes;
  v1::CheckpointChunk chunk;
  int64_t total = -1;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != static_cast<int64_t>(bytes.size())) {
      return absl::DataLossError("checkpoint chunk out of order");
    }
    if (chunk.data().size() > (1u << 20)) return absl::DataLossError("chunk over 1 MiB");
    total = chunk.total_bytes();
    bytes += chunk.data();
  }
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  if (total != static_cast<int64_t>(bytes.size())) {
    return absl::DataLossError("checkpoint size differs from total_bytes");
  }
  return bytes;
}

}  // namespace metatrain::testing
