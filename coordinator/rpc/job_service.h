#ifndef METATRAIN_COORDINATOR_RPC_JOB_SERVICE_H_
#define METATRAIN_COORDINATOR_RPC_JOB_SERVICE_H_

// v1.JobService over the Coordinator, on gRPC's synchronous API: every call is short
// except WatchJob and FetchCheckpoint, which hold one server thread per open stream.
// Every handler first asks the Authorizer (NOTE [Where calls are authorised] in auth.h).

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/coordinator.h"
#include "coordinator/rpc/auth.h"
#include "metatrain/v1/job_service.grpc.pb.h"

namespace metatrain::coordinator {

class JobServiceImpl final : public v1::JobService::Service {
 public:
  // `coordinator` and `authorizer` must outlive the service. A null `authorizer` lets
  // every caller in. `max_queued_per_caller` > 0: SubmitJob answers RESOURCE_EXHAUSTED
  // when the caller's token already has that many jobs QUEUED (all callers share one
  // count when the job API is open).
  explicit JobServiceImpl(Coordinator* coordinator, const Authorizer* authorizer = nullptr,
                          int max_queued_per_caller = 0)
      : coordinator_(coordinator),
        authorizer_(authorizer),
        max_queued_per_caller_(max_queued_per_caller) {}

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::JobStatus* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::CancelJobResponse* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;
  grpc::Status FetchCheckpoint(grpc::ServerContext* context,
                               const v1::FetchCheckpointRequest* request,
                               grpc::ServerWriter<v1::CheckpointChunk>* writer) override;

 private:
  // OK with *caller set, or the status that ends the call before any work.
  grpc::Status Authorize(const grpc::ServerContext& context, const char* rpc, Caller* caller) const;
  // Jobs a caller submitted that may still be queued, and submissions under way.
  struct Queued {
    std::vector<std::string> job_ids;
    int reserved = 0;
  };
  // Reserves a queue slot for `caller_key`, or RESOURCE_EXHAUSTED naming the limit.
  absl::Status ReserveQueueSlot(const std::string& caller_key) ABSL_LOCKS_EXCLUDED(quota_mu_);
  void ReleaseQueueSlot(const std::string& caller_key, const std::string& job_id)
      ABSL_LOCKS_EXCLUDED(quota_mu_);

  Coordinator* const coordinator_;
  const Authorizer* const authorizer_;
  const int max_queued_per_caller_;
  absl::Mutex quota_mu_;
  absl::flat_hash_map<std::string, Queued> queued_ ABSL_GUARDED_BY(quota_mu_);
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_RPC_JOB_SERVICE_H_
