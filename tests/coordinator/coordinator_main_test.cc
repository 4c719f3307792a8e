// The metatrain-coordinator binary as users run it: a free port printed on stdout, the
// gRPC health service, a job trained by a worker, checkpoints that PyTorch loads, and a
// clean exit on SIGTERM with workers told to shut down.

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "metatrain/v1/job_service.grpc.pb.h"
#include "tests/coordinator/test_specs.h"
#include "tests/testing/in_process_worker.h"

namespace metatrain::testing {
namespace {

namespace fs = std::filesystem;

struct Process {
  pid_t pid = -1;
  FILE* out = nullptr;
};

Process Spawn(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  Process p;
  p.pid = fork();
  if (p.pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  p.out = fdopen(fds[0], "r");
  return p;
}

// grpc.health.v1.Health/Check for the whole server: HealthCheckRequest{} is empty and
// HealthCheckResponse{status: SERVING} is the two bytes 08 01.
std::string HealthCheck(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  // The callback runs on a gRPC thread; it sets both under mu.
  absl::Mutex mu;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   absl::MutexLock lock(&mu);
                   status = s;
                   done = true;
                 });
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(&done));
  if (!status.ok()) return "error: " + status.error_message();
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes;
}

TEST(CoordinatorMainTest, ServesTrainsCheckpointsAndExitsCleanly) {
  const char* binary_dir = std::getenv("METATRAIN_BINARY_DIR");
  ASSERT_NE(binary_dir, nullptr);
  const std::string binary = std::string(binary_dir) + "/coordinator/metatrain-coordinator";
  const fs::path dir = fs::temp_directory_path() / ("coordinator-main-" + std::to_string(getpid()));
  fs::remove_all(dir);

  Process p =
      Spawn({binary, "--listen=127.0.0.1:0", "--insecure", "--checkpoint_dir=" + dir.string()});
  ASSERT_GT(p.pid, 0);
  ASSERT_NE(p.out, nullptr);
  char line[256] = {0};
  ASSERT_NE(fgets(line, sizeof line, p.out), nullptr);
  std::string text(line);
  ASSERT_TRUE(absl::StartsWith(text, "listening on 127.0.0.1:")) << text;
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(text.substr(23, text.find_last_not_of("\r\n") - 22), &port)) << text;
  ASSERT_GT(port, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);

  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  EXPECT_EQ(HealthCheck(channel), std::string("\x08\x01", 2));

  std::string job_id;
  {
    InProcessWorker worker(address);
    auto stub = v1::JobService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::SubmitJobRequest request;
    *request.mutable_spec() = SmallSinusoidSpec("maml", 4);
    v1::SubmitJobResponse response;
    ASSERT_TRUE(stub->SubmitJob(&context, request, &response).ok());
    job_id = response.job_id();
    grpc::ClientContext watch_context;
    watch_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::WatchJobRequest watch;
    watch.set_job_id(job_id);
    auto reader = stub->WatchJob(&watch_context, watch);
    v1::JobEvent event;
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    while (reader->Read(&event)) state = event.status().state();
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(state, v1::SUCCEEDED);

    // PyTorch reads every file the job left.
    const fs::path job_dir = dir / job_id;
    const std::string script =
        "import sys, torch\n"
        "for name in ('best.pt', 'final.pt', 'resume.pt'):\n"
        "    d = torch.load(sys.argv[1] + '/' + name)\n"
        "    assert isinstance(d, dict) and d, name\n"
        "    print(name, len(d), 'net.0.weight' in d or 'params.net.0.weight' in d)\n";
    std::ofstream(dir / "check.py") << script;
    const int rc = std::system(("/usr/bin/python3 " + (dir / "check.py").string() + " " +
                                job_dir.string() + " > " + (dir / "python.out").string() + " 2>&1")
                                   .c_str());
    std::ifstream in(dir / "python.out");
    std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(rc, 0) << output;
    EXPECT_NE(output.find("best.pt"), std::string::npos) << output;
    EXPECT_NE(output.find("resume.pt"), std::string::npos) << output;

    kill(p.pid, SIGTERM);
    int status = 0;
    ASSERT_EQ(waitpid(p.pid, &status, 0), p.pid);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    worker.Stop();
    // A stopping coordinator lets its workers be: they reconnect to the next one at the
    // same address (docs/coordinator.md).
    EXPECT_FALSE(worker.got_shutdown());
  }
  fclose(p.out);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace metatrain::testing
