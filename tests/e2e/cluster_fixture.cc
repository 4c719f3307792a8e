#include "tests/e2e/cluster_fixture.h"

#include <signal.h>

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "tests/common/data/data_test_util.h"

namespace metatrain::e2e {
namespace {

std::unique_ptr<v1::JobService::Stub> NewStub(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return v1::JobService::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
}

}  // namespace

v1::JobSpec TestSpec(int64_t steps) {
  auto spec = meta::ParseJobSpec(absl::StrCat(R"({
    "name": "e2e-sinusoid", "algorithm": "maml",
    "model": {"kind": "mlp", "hidden_sizes": [32, 32]},
    "tasks": {"family": "sinusoid", "shots": 10},
    "meta_batch_size": 7,
    "inner": {"steps": 1, "lr": 0.01, "test_steps": 5},
    "outer": {"kind": "adam", "lr": 0.005},
    "steps": )",
                                              steps, R"(,
    "validation_interval": 10, "validation_tasks": 9,
    "test_tasks": 40, "seed": 5
  })"));
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

Reference TrainInProcess(const v1::JobSpec& spec) {
  auto normalized = meta::NormalizeJobSpec(spec);
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  auto job = meta::MakeJobContext(*normalized);
  EXPECT_TRUE(job.ok()) << job.status();
  auto result = meta::Train(*job);
  EXPECT_TRUE(result.ok()) << result.status();
  return Reference{job->learner->meta_param_specs(), job->dtype, std::move(*result)};
}

void Cluster::SetUp() {
  // Coordinator and workers inherit the dataset decode cache the data tests share, so
  // real data is decoded once per build tree, not once per process.
  setenv("METATRAIN_CACHE_DIR", data::testing::TestCacheDir().c_str(), 1);
  dir_ = MakeTempDir("metatrain-e2e-");
  ASSERT_FALSE(dir_.empty());
  auto coordinator = StartCoordinator(dir_);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  coordinator_ = std::move(*coordinator);
  stub_ = NewStub(coordinator_.address);
}

void Cluster::TearDown() {
  workers_.clear();  // SIGKILL + reap
  coordinator_.process.reset();
  // Logs and checkpoints stay behind only when they can explain a failure.
  if (!HasFailure() && !dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

void Cluster::ReconnectStub() { stub_ = NewStub(coordinator_.address); }

void Cluster::RestartCoordinator(const std::vector<std::string>& flags, const std::string& listen) {
  coordinator_.process.reset();
  const std::string dir = absl::StrCat(dir_, "/restarted");
  std::filesystem::create_directories(dir);
  auto coordinator = StartCoordinator(dir, flags, listen);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  coordinator_ = std::move(*coordinator);
  stub_ = NewStub(coordinator_.address);
}

ChildProcess& Cluster::AddWorker(const std::vector<std::string>& flags,
                                 const std::vector<std::string>& prefix,
                                 const std::string& address) {
  const std::string log = absl::StrCat(dir_, "/worker-", workers_.size() + 1, ".log");
  auto worker = StartWorker(address.empty() ? coordinator_.address : address, log, flags, prefix);
  EXPECT_TRUE(worker.ok()) << worker.status();
  workers_.push_back(std::move(*worker));
  absl::Status connected = WaitForWorkerConnected(log, absl::Seconds(60));
  EXPECT_TRUE(connected.ok()) << connected;
  return *workers_.back();
}

std::string Cluster::Submit(const v1::JobSpec& spec) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  v1::SubmitJobResponse response;
  grpc::Status status = stub_->SubmitJob(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.job_id();
}

v1::JobStatus Cluster::WatchUntil(const std::string& job_id,
                                  const std::function<bool(const v1::JobStatus&)>& until,
                                  std::chrono::seconds deadline) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  auto stream = stub_->WatchJob(&context, request);
  v1::JobEvent event;
  v1::JobStatus last;
  while (stream->Read(&event)) {
    last = event.status();
    if (until(last)) break;
    if (last.state() == v1::SUCCEEDED || last.state() == v1::FAILED ||
        last.state() == v1::CANCELLED) {
      break;
    }
  }
  context.TryCancel();
  stream->Finish();
  return last;
}

v1::JobStatus Cluster::WaitForEnd(const std::string& job_id) {
  return WatchUntil(job_id, [](const v1::JobStatus&) { return false; });
}

v1::JobStatus Cluster::Current(const std::string& job_id) {
  return WatchUntil(job_id, [](const v1::JobStatus&) { return true; });
}

meta::TensorList Cluster::Fetch(const std::string& job_id, const std::string& which,
                                const Reference& reference) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::FetchCheckpointRequest request;
  request.set_job_id(job_id);
  request.set_which(which);
  auto stream = stub_->FetchCheckpoint(&context, request);
  std::string bytes;
  v1::CheckpointChunk chunk;
  while (stream->Read(&chunk)) {
    EXPECT_EQ(chunk.offset(), static_cast<int64_t>(bytes.size()));
    bytes += chunk.data();
  }
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  auto state = meta::DeserializeStateDict(bytes);
  EXPECT_TRUE(state.ok()) << state.status();
  if (!state.ok()) return {};
  auto params = meta::FromStateDict(reference.specs, *state, reference.dtype,
                                    /*allow_extra=*/true);
  EXPECT_TRUE(params.ok()) << params.status();
  return params.ok() ? *params : meta::TensorList{};
}

void Cluster::ExpectBitIdentical(const meta::TensorList& got, const meta::TensorList& want,
                                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(at::equal(got[i], want[i])) << what << ": tensor " << i << " differs";
  }
}

int64_t Cluster::StopAndExpectTheTrainersBits(const std::string& job_id, v1::JobSpec spec,
                                              const std::string& what) {
  coordinator_.process->Signal(SIGTERM);
  auto exit_code = coordinator_.process->Wait(absl::Seconds(30));
  EXPECT_TRUE(exit_code.ok()) << "still running 30 s after SIGTERM";
  if (!exit_code.ok()) return -1;
  auto resume = meta::LoadStateDict(absl::StrCat(dir_, "/checkpoints/", job_id, "/resume.pt"));
  if (!resume.ok()) {  // a coordinator restarted by RestartCoordinator keeps its files here
    resume =
        meta::LoadStateDict(absl::StrCat(dir_, "/restarted/checkpoints/", job_id, "/resume.pt"));
  }
  EXPECT_TRUE(resume.ok()) << resume.status();
  if (!resume.ok()) return -1;
  const int64_t step = resume->at("step").item<int64_t>();
  spec.set_steps(step);
  const Reference reference = TrainInProcess(spec);
  // resume.pt keeps the meta-parameters under "params." (coordinator/job_checkpoint.h).
  meta::StateDict current;
  for (const auto& [key, tensor] : *resume) {
    if (key.rfind("params.", 0) == 0) current[key.substr(7)] = tensor;
  }
  auto params = meta::FromStateDict(reference.specs, current, reference.dtype);
  EXPECT_TRUE(params.ok()) << params.status();
  if (params.ok()) {
    ExpectBitIdentical(*params, reference.result.final_params,
                       absl::StrCat(what, ", at step ", step));
  }
  return step;
}

}  // namespace metatrain::e2e
