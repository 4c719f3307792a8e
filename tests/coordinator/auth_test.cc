// Who may call what (coordinator/rpc/auth.h), over real gRPC with TLS on loopback and
// throw-away certificates made with openssl: every RPC of JobService and WorkerService is
// called with no token, a wrong one, a read token, an admin token and the worker join
// token. The RPCs come from the services' descriptors, so an RPC added without a rule
// fails here. Also: mutual TLS for workers, plaintext against TLS, token rotation without
// a restart, and the per-token queue limit.

#include "coordinator/rpc/auth.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/rpc/credentials.h"
#include "coordinator/coordinator.h"
#include "coordinator/rpc/server.h"
#include "metatrain/v1/job_service.grpc.pb.h"
#include "metatrain/v1/worker_service.grpc.pb.h"
#include "tests/coordinator/test_specs.h"
#include "tests/testing/throwaway_certs.h"

namespace metatrain::coordinator {
namespace {

namespace fs = std::filesystem;
using testing::MakeThrowawayCredentials;
using testing::ReadTrimmed;

constexpr char kWrongToken[] = "0123456789abcdef-not-a-token-of-this-server";

std::string TempDir() {
  std::string pattern = (fs::temp_directory_path() / "metatrain-auth-XXXXXX").string();
  return mkdtemp(pattern.data()) != nullptr ? pattern : "";
}

// Replaces a file the way editors and Kubernetes do: a new file renamed over the old one.
void ReplaceFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".new";
  std::ofstream(tmp) << text;
  fs::rename(tmp, path);
}

// One call of `method` with an empty request, through gRPC's generic API (any method,
// unary or streaming alike): the status it ends with.
grpc::Status Call(grpc::Channel* channel, const std::string& method, const std::string& token) {
  grpc::GenericStub stub(channel->shared_from_this());
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  rpc::AttachToken(&context, token);
  grpc::CompletionQueue queue;
  auto next = [&queue] {
    void* tag = nullptr;
    bool ok = false;
    queue.Next(&tag, &ok);
    return ok;
  };
  auto call = stub.PrepareCall(&context, method, &queue);
  call->StartCall(nullptr);
  if (next()) {
    grpc::ByteBuffer request;  // an empty message: every field at its default
    grpc::Slice empty;
    request = grpc::ByteBuffer(&empty, 1);
    call->Write(request, nullptr);
    if (next()) {
      call->WritesDone(nullptr);
      next();
    }
    grpc::ByteBuffer response;
    do {
      call->Read(&response, nullptr);
    } while (next());
  }
  grpc::Status status;
  call->Finish(&status, nullptr);
  next();
  queue.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (queue.Next(&tag, &ok)) {
  }
  return status;
}

// Every method of the services the coordinator serves, from the generated descriptors.
std::vector<std::string> AllMethods() {
  std::vector<std::string> methods;
  for (const char* name :
       {v1::JobService::service_full_name(), v1::WorkerService::service_full_name()}) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    EXPECT_NE(service, nullptr) << name;
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      methods.push_back(absl::StrCat("/", service->full_name(), "/", service->method(i)->name()));
    }
  }
  return methods;
}

bool Refused(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         status.error_code() == grpc::StatusCode::PERMISSION_DENIED;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(MakeThrowawayCredentials(dir_).ok());
    admin_ = ReadTrimmed(dir_ + "/client/admin.token");
    read_ = ReadTrimmed(dir_ + "/client/read.token");
    worker_ = ReadTrimmed(dir_ + "/worker/token");
    ASSERT_EQ(admin_.size(), 64u);
  }
  void TearDown() override {
    server_.reset();
    coordinator_.reset();
    authorizer_.reset();
    fs::remove_all(dir_);
  }

  void StartServer(bool mutual, const std::string& tokens_file = "", int max_queued = 0) {
    CoordinatorOptions options;
    coordinator_ = std::make_unique<Coordinator>(options);
    ASSERT_TRUE(coordinator_->Start().ok());
    rpc::ServerTlsOptions tls;
    tls.cert_file = dir_ + "/coordinator/tls.crt";
    tls.key_file = dir_ + "/coordinator/tls.key";
    if (mutual) tls.client_ca_file = dir_ + "/coordinator/ca.crt";
    auto credentials = rpc::MakeServerCredentials(tls);
    ASSERT_TRUE(credentials.ok()) << credentials.status();
    Authorizer::Options auth;
    auth.tokens_file = tokens_file.empty() ? dir_ + "/coordinator/tokens" : tokens_file;
    auth.worker_token_file = dir_ + "/coordinator/worker-tokens";
    auth.require_worker_certificate = mutual;
    auth.reload_interval = absl::Milliseconds(50);
    auto authorizer = Authorizer::Create(auth);
    ASSERT_TRUE(authorizer.ok()) << authorizer.status();
    authorizer_ = *std::move(authorizer);
    ServerSecurity security;
    security.credentials = *credentials;
    security.authorizer = authorizer_.get();
    security.max_queued_jobs_per_token = max_queued;
    auto server =
        CoordinatorServer::Start("127.0.0.1:0", coordinator_.get(), 0, absl::Seconds(20), security);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    address_ = absl::StrCat("127.0.0.1:", server_->port());
  }

  // A TLS channel trusting the throw-away CA; with the worker's certificate if `cert`.
  std::shared_ptr<grpc::Channel> Channel(bool cert) {
    rpc::ClientTlsOptions tls;
    tls.ca_file = dir_ + "/worker/ca.crt";
    if (cert) {
      tls.cert_file = dir_ + "/worker/tls.crt";
      tls.key_file = dir_ + "/worker/tls.key";
    }
    auto credentials = rpc::MakeChannelCredentials(tls);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    return grpc::CreateChannel(address_, *credentials);
  }

  absl::StatusOr<std::string> Submit(grpc::Channel* channel, const std::string& token) {
    auto stub = v1::JobService::NewStub(channel->shared_from_this());
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    rpc::AttachToken(&context, token);
    v1::SubmitJobRequest request;
    *request.mutable_spec() = testing::SmallSinusoidSpec("maml", 1000);
    v1::SubmitJobResponse response;
    grpc::Status status = stub->SubmitJob(&context, request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return response.job_id();
  }

  std::string dir_, admin_, read_, worker_, address_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorServer> server_;
};

TEST_F(AuthTest, EveryRpcHasARuleAndEveryTokenGetsWhatTheRuleSays) {
  StartServer(/*mutual=*/false);
  auto channel = Channel(/*cert=*/false);
  const std::vector<std::string> methods = AllMethods();
  ASSERT_GE(methods.size(), 7u);
  enum Expect { kAllowed, kUnauthenticated, kDenied };
  int accepted_submissions = 0;  // an empty spec may be valid (every field has a default)
  for (const std::string& method : methods) {
    const std::optional<Permission> permission = RequiredPermission(method);
    ASSERT_TRUE(permission.has_value())
        << method << " has no rule in coordinator/rpc/auth.cc: add one (and a line to "
        << "docs/security.md)";
    const bool worker = *permission == Permission::kWorker;
    const bool admin_only = *permission == Permission::kAdmin;
    struct Case {
      const char* who;
      std::string token;
      Expect expect;
    };
    const std::vector<Case> cases = {
        {"no token", "", kUnauthenticated},
        {"a wrong token", kWrongToken, kUnauthenticated},
        {"a read token", read_,
         worker       ? kUnauthenticated
         : admin_only ? kDenied
                      : kAllowed},
        {"an admin token", admin_, worker ? kUnauthenticated : kAllowed},
        {"the worker join token", worker_, worker ? kAllowed : kUnauthenticated},
    };
    for (const Case& c : cases) {
      const grpc::Status status = Call(channel.get(), method, c.token);
      if (status.ok() && absl::EndsWith(method, "/SubmitJob")) ++accepted_submissions;
      const std::string where = absl::StrCat(method, " with ", c.who, ": ", status.error_code(),
                                             " ", status.error_message());
      switch (c.expect) {
        case kAllowed:
          // The handler ran: whatever it says of an empty request, it is not a refusal.
          EXPECT_FALSE(Refused(status)) << where;
          EXPECT_NE(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << where;
          EXPECT_NE(status.error_code(), grpc::StatusCode::UNAVAILABLE) << where;
          break;
        case kUnauthenticated:
          EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << where;
          break;
        case kDenied:
          EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << where;
          break;
      }
      for (const std::string& secret : {admin_, read_, worker_, std::string(kWrongToken)}) {
        EXPECT_EQ(status.error_message().find(secret), std::string::npos) << where;
      }
    }
  }
  // Nothing was queued by a refused SubmitJob: only the admin's may have queued a job.
  EXPECT_LE(accepted_submissions, 1);
  auto stub = v1::JobService::NewStub(channel);
  grpc::ClientContext context;
  rpc::AttachToken(&context, read_);
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(stub->ListJobs(&context, v1::ListJobsRequest(), &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), accepted_submissions);
}

TEST_F(AuthTest, AMethodWithoutARuleIsRefused) {
  EXPECT_FALSE(RequiredPermission("/metatrain.v1.JobService/DeleteEverything").has_value());
  EXPECT_FALSE(RequiredPermission("").has_value());
}

TEST_F(AuthTest, MutualTlsRefusesAWorkerWithoutACertificateButNotAJobClient) {
  StartServer(/*mutual=*/true);
  const std::string session = absl::StrCat("/", v1::WorkerService::service_full_name(), "/Session");
  const std::string list = absl::StrCat("/", v1::JobService::service_full_name(), "/ListJobs");
  auto without = Channel(/*cert=*/false);
  grpc::Status status = Call(without.get(), session, worker_);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  EXPECT_NE(status.error_message().find("client certificate"), std::string::npos)
      << status.error_message();
  EXPECT_TRUE(Call(without.get(), list, read_).ok());

  auto with = Channel(/*cert=*/true);
  status = Call(with.get(), session, worker_);
  EXPECT_FALSE(Refused(status)) << status.error_message();
  // The certificate does not replace the join token.
  status = Call(with.get(), session, "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
}

TEST_F(AuthTest, PlaintextClientCannotTalkToTheTlsServer) {
  StartServer(/*mutual=*/false);
  auto plain = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  const grpc::Status status = Call(
      plain.get(), absl::StrCat("/", v1::JobService::service_full_name(), "/ListJobs"), admin_);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(AuthTest, AClientThatDoesNotTrustTheServersCaFails) {
  StartServer(/*mutual=*/false);
  const std::string other = dir_ + "/other";
  ASSERT_TRUE(MakeThrowawayCredentials(other).ok());
  rpc::ClientTlsOptions tls;
  tls.ca_file = other + "/client/ca.crt";
  auto credentials = rpc::MakeChannelCredentials(tls);
  ASSERT_TRUE(credentials.ok());
  auto channel = grpc::CreateChannel(address_, *credentials);
  const grpc::Status status = Call(
      channel.get(), absl::StrCat("/", v1::JobService::service_full_name(), "/ListJobs"), admin_);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(AuthTest, TokensRotateWithoutARestart) {
  const std::string tokens = dir_ + "/rotating-tokens";
  const std::string old_token(40, 'a'), new_token(40, 'b');
  std::ofstream(tokens) << "admin " << old_token << "\n";
  StartServer(/*mutual=*/false, tokens);
  auto channel = Channel(/*cert=*/false);
  const std::string list = absl::StrCat("/", v1::JobService::service_full_name(), "/ListJobs");
  EXPECT_TRUE(Call(channel.get(), list, old_token).ok());
  EXPECT_EQ(Call(channel.get(), list, new_token).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // The background reload picks the new file up by itself.
  const int loads = authorizer_->tokens()->loads();
  ReplaceFile(tokens, absl::StrCat("read ", new_token, "\n"));
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (authorizer_->tokens()->loads() == loads && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));  // the reloader looks every 50 ms
  }
  ASSERT_GT(authorizer_->tokens()->loads(), loads);
  EXPECT_EQ(Call(channel.get(), list, old_token).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Call(channel.get(), list, new_token).ok());
  EXPECT_EQ(Call(channel.get(),
                 absl::StrCat("/", v1::JobService::service_full_name(), "/CancelJob"), new_token)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // A broken file keeps the tokens loaded before.
  ReplaceFile(tokens, absl::StrCat("superuser ", old_token, "\n"));
  authorizer_->tokens()->ReloadIfChanged();
  EXPECT_TRUE(Call(channel.get(), list, new_token).ok());
  EXPECT_EQ(Call(channel.get(), list, old_token).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthTest, QueuedJobsPerTokenAreLimited) {
  const std::string tokens = dir_ + "/two-admins";
  const std::string first(32, 'c'), second(32, 'd');
  std::ofstream(tokens) << "admin " << first << "\nadmin " << second << "\n";
  StartServer(/*mutual=*/false, tokens, /*max_queued=*/2);
  auto channel = Channel(/*cert=*/false);
  // One job runs (waiting for workers that never come), the next two queue, then no more.
  absl::Status refused;
  int accepted = 0;
  for (int i = 0; i < 6 && refused.ok(); ++i) {
    auto job = Submit(channel.get(), first);
    if (job.ok()) {
      ++accepted;
    } else {
      refused = job.status();
    }
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("--max_queued_jobs_per_token=2"), std::string::npos) << refused;
  EXPECT_GE(accepted, 2);
  EXPECT_LE(accepted, 3);
  int queued = 0;
  auto list = coordinator_->ListJobs();
  ASSERT_TRUE(list.ok());
  for (const v1::JobStatus& job : list->jobs()) queued += job.state() == v1::QUEUED;
  EXPECT_EQ(queued, 2);
  // Another token has its own allowance.
  EXPECT_TRUE(Submit(channel.get(), second).ok());
}

TEST(TokenFileTest, RefusesBadFilesNamingTheLineButNotTheToken) {
  const std::string dir = TempDir();
  const std::string path = dir + "/tokens";
  const std::string secret = "s3cr3t-s3cr3t-s3cr3t";
  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {"# comment\n\nroot " + secret + "\n", "line 3: the role must be admin or read"},
           {"admin short\n", "line 1: a token must have at least 16 characters"},
           {"admin " + secret + " extra\n", "line 1: expected \"<role> <token>\""},
           {"admin " + secret + "\nread " + secret + "\n", "line 2: the same token as line 1"},
           {"# nothing\n", "no token in it"},
       }) {
    std::ofstream(path) << text;
    auto file = TokenFile::Open("--tokens_file", path, TokenFile::Format::kRoles, absl::Seconds(1));
    ASSERT_FALSE(file.ok()) << text;
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(file.status().message().find(expected), std::string::npos) << file.status();
    EXPECT_NE(file.status().message().find("--tokens_file"), std::string::npos);
    EXPECT_EQ(file.status().message().find(secret), std::string::npos) << file.status();
  }
  auto missing =
      TokenFile::Open("--tokens_file", dir + "/none", TokenFile::Format::kRoles, absl::Seconds(1));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  fs::remove_all(dir);
}

TEST(TokenFileTest, FindsEachTokensRole) {
  const std::string dir = TempDir();
  const std::string path = dir + "/tokens";
  std::ofstream(path) << "admin " << std::string(20, 'x') << "\n  read\t" << std::string(20, 'y')
                      << "  \n";
  auto file = TokenFile::Open("--tokens_file", path, TokenFile::Format::kRoles, absl::Seconds(1));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Find(std::string(20, 'x')), Role::kAdmin);
  EXPECT_EQ((*file)->Find(std::string(20, 'y')), Role::kRead);
  EXPECT_EQ((*file)->Find(std::string(19, 'x')), std::nullopt);
  EXPECT_EQ((*file)->Find(""), std::nullopt);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace metatrain::coordinator
