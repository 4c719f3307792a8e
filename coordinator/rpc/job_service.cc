#include "coordinator/rpc/job_service.h"

#include <algorithm>
#include <string>

#include "common/status/grpc_status.h"

namespace metatrain::coordinator {
namespace {

constexpr int64_t kCheckpointChunkBytes = 1 << 20;

}  // namespace

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* request,
                                       v1::SubmitJobResponse* response) {
  auto status = coordinator_->SubmitJob(request->spec(), request->request_id());
  if (!status.ok()) return ToGrpcStatus(status.status());
  response->set_job_id(status->job_id());
  *response->mutable_status() = *std::move(status);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                                    v1::JobStatus* response) {
  auto status = coordinator_->GetJob(request->job_id());
  if (!status.ok()) return ToGrpcStatus(status.status());
  *response = *std::move(status);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  auto page = coordinator_->ListJobs(*request);
  if (!page.ok()) return ToGrpcStatus(page.status());
  *response = *std::move(page);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* request,
                                       v1::CancelJobResponse* response) {
  auto status = coordinator_->CancelJob(request->job_id());
  if (!status.ok()) return ToGrpcStatus(status.status());
  *response->mutable_status() = *std::move(status);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context,
                                      const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobEvent>* writer) {
  auto queue = coordinator_->WatchJob(request->job_id());
  if (!queue.ok()) return ToGrpcStatus(queue.status());
  while (!context->IsCancelled()) {
    JobEventQueue::Event event = (*queue)->Next(absl::Milliseconds(250));
    if (event) {
      if (!writer->Write(*event)) break;  // the client went away
      continue;
    }
    if ((*queue)->finished()) break;
  }
  if (context->IsCancelled()) return grpc::Status::CANCELLED;
  // RESOURCE_EXHAUSTED when this client fell too far behind (JobEventQueue).
  return ToGrpcStatus((*queue)->end_status());
}

grpc::Status JobServiceImpl::FetchCheckpoint(grpc::ServerContext* context,
                                             const v1::FetchCheckpointRequest* request,
                                             grpc::ServerWriter<v1::CheckpointChunk>* writer) {
  auto checkpoint = coordinator_->FetchCheckpoint(request->job_id(), request->which());
  if (!checkpoint.ok()) return ToGrpcStatus(checkpoint.status());
  // Shared with the coordinator (or read from disk for this call): no copy here.
  const std::string& bytes = *checkpoint->bytes;
  const int64_t total = static_cast<int64_t>(bytes.size());
  int64_t offset = 0;
  do {
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    const int64_t size = std::min(kCheckpointChunkBytes, total - offset);
    v1::CheckpointChunk chunk;
    chunk.set_offset(offset);
    chunk.set_total_bytes(total);
    chunk.set_data(bytes.data() + offset, static_cast<size_t>(size));
    chunk.set_step(checkpoint->step);
    if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "client gone");
    offset += size;
  } while (offset < total);
  return grpc::Status::OK;
}

}  // namespace metatrain::coordinator
