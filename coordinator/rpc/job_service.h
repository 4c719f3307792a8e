#ifndef METATRAIN_COORDINATOR_RPC_JOB_SERVICE_H_
#define METATRAIN_COORDINATOR_RPC_JOB_SERVICE_H_

// v1.JobService over the Coordinator, on gRPC's synchronous API: every call is short
// except WatchJob and FetchCheckpoint, which hold one server thread per open stream.

#include "coordinator/coordinator.h"
#include "metatrain/v1/job_service.grpc.pb.h"

namespace metatrain::coordinator {

class JobServiceImpl final : public v1::JobService::Service {
 public:
  // `coordinator` must outlive the service.
  explicit JobServiceImpl(Coordinator* coordinator) : coordinator_(coordinator) {}

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
  Coordinator* const coordinator_;
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_RPC_JOB_SERVICE_H_
