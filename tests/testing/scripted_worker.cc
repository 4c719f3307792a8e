#include "tests/testing/scripted_worker.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/rpc/tensor_codec.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "common/version/version.h"

namespace metatrain::testing {

v1::Hello ScriptedWorker::DefaultHello(int capacity) {
  v1::Hello hello;
  hello.set_name("scripted");
  hello.set_device("cpu");
  hello.set_capacity(capacity);
  hello.set_version(Version());  // the coordinator admits its own version only
  return hello;
}

absl::StatusOr<std::unique_ptr<ScriptedWorker>> ScriptedWorker::Connect(const std::string& address,
                                                                        int capacity,
                                                                        absl::Duration deadline) {
  return ConnectWith(address, DefaultHello(capacity), deadline);
}

absl::StatusOr<std::unique_ptr<ScriptedWorker>> ScriptedWorker::ConnectWith(
    const std::string& address, const v1::Hello& hello, absl::Duration deadline) {
  std::unique_ptr<ScriptedWorker> worker(new ScriptedWorker());
  worker->channel_ = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  worker->stub_ = v1::WorkerService::NewStub(worker->channel_);
  worker->context_.set_deadline(std::chrono::system_clock::now() +
                                absl::ToChronoNanoseconds(deadline));
  worker->stream_ = worker->stub_->Session(&worker->context_);
  v1::WorkerMessage message;
  *message.mutable_hello() = hello;
  if (!worker->stream_->Write(message)) return absl::UnavailableError("cannot send Hello");
  auto welcome = worker->Read();
  if (!welcome) {
    worker->closed_ = true;
    RETURN_IF_ERROR(FromGrpcStatus(worker->stream_->Finish()));
    return absl::UnavailableError("the session ended without a Welcome");
  }
  if (!welcome->has_welcome()) return absl::UnavailableError("no Welcome as the first message");
  worker->worker_id_ = welcome->welcome().worker_id();
  return worker;
}

ScriptedWorker::~ScriptedWorker() {
  if (!closed_) {
    context_.TryCancel();
    stream_->Finish();
  }
}

std::optional<v1::CoordinatorMessage> ScriptedWorker::Read() {
  v1::CoordinatorMessage message;
  if (closed_ || !stream_->Read(&message)) return std::nullopt;
  return message;
}

std::optional<v1::Assignment> ScriptedWorker::NextAssignment() {
  while (auto message = Read()) {
    switch (message->kind_case()) {
      case v1::CoordinatorMessage::kJobSetup:
        specs_[message->job_setup().job_id()] = message->job_setup().spec();
        break;
      case v1::CoordinatorMessage::kParameters: {
        const auto& p = message->parameters();
        auto& chunks = params_[{p.job_id(), p.version()}];
        if (p.chunk().tensor_index() == 0 && p.chunk().offset() == 0) chunks.clear();
        chunks.push_back(p.chunk());
        break;
      }
      case v1::CoordinatorMessage::kAssignment:
        return message->assignment();
      case v1::CoordinatorMessage::kShutdown:
        return std::nullopt;
      default:
        break;
    }
  }
  return std::nullopt;
}

absl::StatusOr<meta::TensorList> ScriptedWorker::ParamsOf(const std::string& job_id,
                                                          int64_t version,
                                                          const std::vector<meta::ParamSpec>& specs,
                                                          at::ScalarType dtype) const {
  auto it = params_.find({job_id, version});
  if (it == params_.end()) {
    return absl::NotFoundError(absl::StrCat("no parameters of ", job_id, " version ", version));
  }
  return rpc::DecodeTensors(it->second, specs, dtype);
}

bool ScriptedWorker::HasParams(const std::string& job_id, int64_t version) const {
  return params_.count({job_id, version}) > 0;
}

std::optional<v1::JobSpec> ScriptedWorker::SpecOf(const std::string& job_id) const {
  auto it = specs_.find(job_id);
  if (it == specs_.end()) return std::nullopt;
  return it->second;
}

bool ScriptedWorker::Write(const v1::WorkerMessage& message) { return stream_->Write(message); }

bool ScriptedWorker::SendGradient(int64_t assignment_id, int64_t task_index,
                                  const meta::TensorList& gradient, double query_loss,
                                  double query_accuracy, int64_t max_chunk_bytes) {
  return SendGroupGradient(assignment_id, task_index, gradient, {query_loss}, {query_accuracy},
                           max_chunk_bytes);
}

std::vector<v1::TaskGradient> ScriptedWorker::GroupGradientMessages(
    int64_t assignment_id, int64_t first_task, const meta::TensorList& gradient_sum,
    const std::vector<double>& query_loss, const std::vector<double>& query_accuracy,
    int64_t max_chunk_bytes) {
  std::vector<v1::TaskGradient> messages;
  auto chunks = rpc::EncodeTensors(gradient_sum, std::vector<std::string>{}, max_chunk_bytes);
  if (!chunks.ok()) return messages;
  for (size_t i = 0; i < chunks->size(); ++i) {
    v1::TaskGradient& g = messages.emplace_back();
    g.set_assignment_id(assignment_id);
    g.set_task_index(first_task);
    g.set_task_count(static_cast<int64_t>(query_loss.size()));
    *g.mutable_chunk() = (*chunks)[i];
    g.set_last(i + 1 == chunks->size());
    if (g.last()) {
      for (double loss : query_loss) g.add_query_loss(loss);
      for (double accuracy : query_accuracy) g.add_query_accuracy(accuracy);
    }
  }
  return messages;
}

bool ScriptedWorker::SendGroupGradient(int64_t assignment_id, int64_t first_task,
                                       const meta::TensorList& gradient_sum,
                                       const std::vector<double>& query_loss,
                                       const std::vector<double>& query_accuracy,
                                       int64_t max_chunk_bytes) {
  const std::vector<v1::TaskGradient> messages = GroupGradientMessages(
      assignment_id, first_task, gradient_sum, query_loss, query_accuracy, max_chunk_bytes);
  if (messages.empty()) return false;
  for (const v1::TaskGradient& gradient : messages) {
    v1::WorkerMessage message;
    *message.mutable_gradient() = gradient;
    if (!Write(message)) return false;
  }
  return true;
}

bool ScriptedWorker::SendDone(int64_t assignment_id, const std::vector<v1::TaskMetrics>& metrics,
                              const std::string& error) {
  v1::WorkerMessage message;
  message.mutable_done()->set_assignment_id(assignment_id);
  for (const auto& m : metrics) *message.mutable_done()->add_metrics() = m;
  message.mutable_done()->set_error(error);
  return Write(message);
}

grpc::Status ScriptedWorker::Close() {
  if (closed_) return grpc::Status::OK;
  stream_->WritesDone();
  v1::CoordinatorMessage ignored;
  while (stream_->Read(&ignored)) {
  }
  closed_ = true;
  return stream_->Finish();
}

}  // namespace metatrain::testing
