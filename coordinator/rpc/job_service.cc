#include "coordinator/rpc/job_service.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status/grpc_status.h"

namespace metatrain::coordinator {
namespace {

constexpr int64_t kCheckpointChunkBytes = 1 << 20;

std::string JobMethod(const char* rpc) {
  return absl::StrCat("/", v1::JobService::service_full_name(), "/", rpc);
}

}  // namespace

grpc::Status JobServiceImpl::Authorize(const grpc::ServerContext& context, const char* rpc,
                                       Caller* caller) const {
  if (authorizer_ == nullptr) return grpc::Status::OK;
  auto authorized = authorizer_->Authorize(context, JobMethod(rpc));
  if (!authorized.ok()) return ToGrpcStatus(authorized.status());
  *caller = *std::move(authorized);
  return grpc::Status::OK;
}

absl::Status JobServiceImpl::ReserveQueueSlot(const std::string& caller_key) {
  if (max_queued_per_caller_ <= 0) return absl::OkStatus();
  absl::MutexLock lock(&quota_mu_);
  Queued& queued = queued_[caller_key];
  // Forget jobs that have left the queue (GetJob takes the coordinator's lock briefly, no
  // I/O: NOTE [Nothing blocks under mu_] in coordinator.h).
  std::vector<std::string> still;
  for (const std::string& id : queued.job_ids) {
    auto status = coordinator_->GetJob(id);
    if (status.ok() && status->state() == v1::QUEUED) still.push_back(id);
  }
  queued.job_ids = std::move(still);
  if (static_cast<int>(queued.job_ids.size()) + queued.reserved >= max_queued_per_caller_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this token already has ", queued.job_ids.size() + queued.reserved,
        " queued job(s), the limit (--max_queued_jobs_per_token=", max_queued_per_caller_,
        "); wait for them to start or cancel some"));
  }
  ++queued.reserved;
  return absl::OkStatus();
}

void JobServiceImpl::ReleaseQueueSlot(const std::string& caller_key, const std::string& job_id) {
  if (max_queued_per_caller_ <= 0) return;
  absl::MutexLock lock(&quota_mu_);
  Queued& queued = queued_[caller_key];
  --queued.reserved;
  if (!job_id.empty() &&
      std::find(queued.job_ids.begin(), queued.job_ids.end(), job_id) == queued.job_ids.end()) {
    queued.job_ids.push_back(job_id);
  }
  if (queued.job_ids.empty() && queued.reserved == 0) queued_.erase(caller_key);
}

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* context,
                                       const v1::SubmitJobRequest* request,
                                       v1::SubmitJobResponse* response) {
  Caller caller;
  if (grpc::Status denied = Authorize(*context, "SubmitJob", &caller); !denied.ok()) return denied;
  if (absl::Status reserved = ReserveQueueSlot(caller.key); !reserved.ok()) {
    return ToGrpcStatus(reserved);
  }
  auto status = coordinator_->SubmitJob(request->spec(), request->request_id());
  ReleaseQueueSlot(caller.key,
                   status.ok() && status->state() == v1::QUEUED ? status->job_id() : "");
  if (!status.ok()) return ToGrpcStatus(status.status());
  response->set_job_id(status->job_id());
  *response->mutable_status() = *std::move(status);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                                    v1::JobStatus* response) {
  Caller caller;
  if (grpc::Status denied = Authorize(*context, "GetJob", &caller); !denied.ok()) return denied;
  auto status = coordinator_->GetJob(request->job_id());
  if (!status.ok()) return ToGrpcStatus(status.status());
  *response = *std::move(status);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context,
                                      const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  Caller caller;
  if (grpc::Status denied = Authorize(*context, "ListJobs", &caller); !denied.ok()) return denied;
  auto page = coordinator_->ListJobs(*request);
  if (!page.ok()) return ToGrpcStatus(page.status());
  *response = *std::move(page);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context,
                                       const v1::CancelJobRequest* request,
                                       v1::CancelJobResponse* response) {
  Caller caller;
  if (grpc::Status denied = Authorize(*context, "CancelJob", &caller); !denied.ok()) return denied;
  auto status = coordinator_->CancelJob(request->job_id());
  if (!status.ok()) return ToGrpcStatus(status.status());
  *response->mutable_status() = *std::move(status);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context,
                                      const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobEvent>* writer) {
  Caller caller;
  if (grpc::Status denied = Authorize(*context, "WatchJob", &caller); !denied.ok()) return denied;
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
  Caller caller;
  if (grpc::Status denied = Authorize(*context, "FetchCheckpoint", &caller); !denied.ok())
    return denied;
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
