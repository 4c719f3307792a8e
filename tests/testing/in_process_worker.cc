#include "tests/testing/in_process_worker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/aggregation.h"
#include "common/rpc/tensor_codec.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "common/version/version.h"

namespace metatrain::testing {
namespace {

std::vector<double> ToDoubles(const at::Tensor& t) {
  std::vector<double> out;
  if (!t.defined()) return out;
  at::Tensor d = t.detach().to(at::kDouble).contiguous().reshape({-1});
  out.assign(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  return out;
}

}  // namespace

InProcessWorker::InProcessWorker(const std::string& address, int capacity, std::string name)
    : name_(std::move(name)) {
  channel_ = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  stub_ = v1::WorkerService::NewStub(channel_);
  stream_ = stub_->Session(&context_);
  v1::WorkerMessage hello;
  hello.mutable_hello()->set_name(name_);
  hello.mutable_hello()->set_device("cpu");
  hello.mutable_hello()->set_capacity(capacity);
  hello.mutable_hello()->set_threads(1);
  hello.mutable_hello()->set_version(Version());  // the coordinator admits its own version only
  stream_->Write(hello);
  thread_ = std::thread([this] { Loop(); });
}

InProcessWorker::~InProcessWorker() { Stop(); }

void InProcessWorker::Stop() {
  context_.TryCancel();
  if (thread_.joinable()) thread_.join();
}

absl::Status InProcessWorker::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

void InProcessWorker::Loop() {
  v1::CoordinatorMessage message;
  absl::Status status;
  while (stream_->Read(&message)) {
    if (message.has_shutdown()) {
      got_shutdown_ = true;
      stream_->WritesDone();
      break;
    }
    status = Serve(message);
    if (!status.ok()) break;
  }
  if (!status.ok()) context_.TryCancel();
  while (stream_->Read(&message)) {
  }
  grpc::Status finished = stream_->Finish();
  absl::MutexLock lock(&mu_);
  status_ = status.ok() ? FromGrpcStatus(finished) : status;
}

absl::Status InProcessWorker::Serve(const v1::CoordinatorMessage& message) {
  switch (message.kind_case()) {
    case v1::CoordinatorMessage::kJobSetup: {
      ASSIGN_OR_RETURN(meta::JobContext context, meta::MakeJobContext(message.job_setup().spec()));
      jobs_[message.job_setup().job_id()].context =
          std::make_unique<meta::JobContext>(std::move(context));
      return absl::OkStatus();
    }
    case v1::CoordinatorMessage::kParameters: {
      const auto& p = message.parameters();
      auto it = jobs_.find(p.job_id());
      if (it == jobs_.end()) return absl::FailedPreconditionError("Parameters before JobSetup");
      Job& job = it->second;
      job.chunks[p.version()].push_back(p.chunk());
      if (p.last()) {
        ASSIGN_OR_RETURN(
            job.params[p.version()],
            rpc::DecodeTensors(job.chunks[p.version()], job.context->learner->meta_param_specs(),
                               job.context->dtype));
        job.chunks.erase(p.version());
        // Keep the two versions received last (the coordinator re-sends an older version,
        // e.g. the best parameters for the meta-test, when it needs it again).
        job.received.erase(std::remove(job.received.begin(), job.received.end(), p.version()),
                           job.received.end());
        job.received.push_back(p.version());
        while (job.received.size() > 2) {
          job.params.erase(job.received.front());
          job.received.erase(job.received.begin());
        }
      }
      return absl::OkStatus();
    }
    case v1::CoordinatorMessage::kAssignment: {
      // A failed computation is reported to the coordinator, as a real worker does.
      absl::Status computed = Compute(message.assignment());
      if (computed.ok() || computed.code() == absl::StatusCode::kUnavailable) return computed;
      v1::WorkerMessage done;
      done.mutable_done()->set_assignment_id(message.assignment().assignment_id());
      done.mutable_done()->set_error(std::string(computed.message()));
      if (!stream_->Write(done)) return absl::UnavailableError("stream closed");
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status InProcessWorker::Compute(const v1::Assignment& assignment) {
  auto it = jobs_.find(assignment.job_id());
  if (it == jobs_.end()) return absl::FailedPreconditionError("Assignment before JobSetup");
  Job& job = it->second;
  auto params = job.params.find(assignment.version());
  if (params == job.params.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no parameters of version ", assignment.version()));
  }
  std::vector<meta::TaskKey> keys;
  for (int64_t index : assignment.task_indices()) {
    keys.push_back(
        meta::TaskKey{static_cast<meta::Split>(assignment.split()), assignment.round(), index});
  }
  const meta::JobContext& context = *job.context;
  ASSIGN_OR_RETURN(meta::TaskBatch tasks, context.family->Sample(keys, context.dtype));
  v1::WorkerMessage done;
  done.mutable_done()->set_assignment_id(assignment.assignment_id());
  if (assignment.eval_steps() == 0 && assignment.split() == v1::TASK_SPLIT_TRAIN) {
    ASSIGN_OR_RETURN(meta::MetaGradients grads,
                     context.learner->ComputeMetaGradients(params->second, tasks));
    std::vector<meta::TensorList> per_task = meta::SplitPerTask(grads.per_task);
    const std::vector<double> loss = ToDoubles(grads.query_loss);
    const std::vector<double> accuracy = ToDoubles(grads.query_accuracy);
    // The coordinator assigns whole gradient groups, starting at a group's first task.
    const int64_t group_size = std::max<int64_t>(1, context.spec.gradient_group_size());
    for (size_t begin = 0; begin < keys.size(); begin += group_size) {
      const size_t end = std::min(keys.size(), begin + static_cast<size_t>(group_size));
      ASSIGN_OR_RETURN(std::vector<v1::TensorChunk> chunks,
                       rpc::EncodeTensors(meta::SumInOrder(per_task, begin, end)));
      for (size_t c = 0; c < chunks.size(); ++c) {
        v1::WorkerMessage message;
        v1::TaskGradient* g = message.mutable_gradient();
        g->set_assignment_id(assignment.assignment_id());
        g->set_task_index(keys[begin].index);
        g->set_task_count(static_cast<int64_t>(end - begin));
        *g->mutable_chunk() = std::move(chunks[c]);
        g->set_last(c + 1 == chunks.size());
        for (size_t t = begin; g->last() && t < end; ++t) {
          g->add_query_loss(loss[t]);
          g->add_query_accuracy(accuracy.empty() ? -1 : accuracy[t]);
        }
        if (!stream_->Write(message)) return absl::UnavailableError("stream closed");
      }
    }
  } else {
    ASSIGN_OR_RETURN(meta::Adaptation adaptation,
                     context.learner->Evaluate(params->second, tasks, assignment.eval_steps()));
    const auto lb = ToDoubles(adaptation.loss_before), la = ToDoubles(adaptation.loss_after);
    const auto ab = ToDoubles(adaptation.accuracy_before),
               aa = ToDoubles(adaptation.accuracy_after);
    for (size_t t = 0; t < keys.size(); ++t) {
      v1::TaskMetrics* m = done.mutable_done()->add_metrics();
      m->set_task_index(keys[t].index);
      m->set_loss_before(lb[t]);
      m->set_loss_after(la[t]);
      m->set_accuracy_before(ab.empty() ? -1 : ab[t]);
      m->set_accuracy_after(aa.empty() ? -1 : aa[t]);
    }
  }
  if (!stream_->Write(done)) return absl::UnavailableError("stream closed");
  ++assignments_done_;
  return absl::OkStatus();
}

}  // namespace metatrain::testing
