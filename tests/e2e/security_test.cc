// TLS, mutual TLS and tokens as users meet them: real metatrain-coordinator, metatrain-worker
// and metactl processes on loopback with throw-away certificates and tokens made by
// deploy/tls/make-certs.sh (openssl) at test time. docs/security.md describes the setup.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/e2e/process.h"
#include "tests/testing/throwaway_certs.h"

namespace metatrain::e2e {
namespace {

using ::testing::HasSubstr;
using testing::MakeThrowawayCredentials;
using ::testing::Not;
using testing::ReadTrimmed;
using ::testing::StartsWith;

constexpr char kJob[] = R"({
  "name": "security-e2e", "algorithm": "maml",
  "model": {"kind": "mlp", "hidden_sizes": [16, 16]},
  "tasks": {"family": "sinusoid", "shots": 5},
  "meta_batch_size": 4, "steps": 20, "test_tasks": 10, "seed": 3,
  "validation_interval": 5, "validation_tasks": 4,
  "inner": {"test_steps": 3}
})";
constexpr char kWrongToken[] = "wrong-wrong-wrong-wrong-wrong-0123456789";

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int CountLines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("metatrain-security-");
    ASSERT_FALSE(dir_.empty());
    secrets_ = dir_ + "/secrets";
    ASSERT_TRUE(MakeThrowawayCredentials(secrets_).ok());
    std::ofstream(dir_ + "/job.json") << kJob;
    std::ofstream(dir_ + "/wrong.token") << kWrongToken << "\n";
    // Writable copies: the rotation test replaces them.
    std::filesystem::copy_file(secrets_ + "/coordinator/tokens", dir_ + "/tokens");
  }
  void TearDown() override {
    workers_.clear();
    coordinator_.process.reset();
  }

  std::vector<std::string> CoordinatorFlags(bool mutual) {
    std::vector<std::string> flags = {
        "--tls_cert=" + secrets_ + "/coordinator/tls.crt",
        "--tls_key=" + secrets_ + "/coordinator/tls.key", "--tokens_file=" + dir_ + "/tokens",
        "--worker_token_file=" + secrets_ + "/coordinator/worker-tokens"};
    if (mutual) flags.push_back("--tls_client_ca=" + secrets_ + "/coordinator/ca.crt");
    return flags;
  }
  void StartTlsCoordinator(bool mutual) {
    auto coordinator = StartCoordinator(dir_, CoordinatorFlags(mutual));
    ASSERT_TRUE(coordinator.ok()) << coordinator.status();
    coordinator_ = std::move(*coordinator);
  }
  std::vector<std::string> WorkerFlags(bool cert) {
    std::vector<std::string> flags = {"--tls_ca=" + secrets_ + "/worker/ca.crt",
                                      "--token_file=" + secrets_ + "/worker/token"};
    if (cert) {
      flags.push_back("--tls_cert=" + secrets_ + "/worker/tls.crt");
      flags.push_back("--tls_key=" + secrets_ + "/worker/tls.key");
    }
    return flags;
  }
  // metactl with TLS against the throw-away CA and the given token file.
  CommandResult Metactl(const std::string& token_file, std::vector<std::string> args,
                        bool tls = true) {
    std::vector<std::string> argv = {BinaryPath("tools/metactl/metactl"), "--coordinator",
                                     coordinator_.address};
    if (tls) argv.push_back("--tls_ca=" + secrets_ + "/client/ca.crt");
    if (!tls) argv.push_back("--insecure");
    if (!token_file.empty()) argv.push_back("--token_file=" + token_file);
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = RunCommand(argv, absl::Seconds(180));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult{};
  }
  std::string Admin() const { return secrets_ + "/client/admin.token"; }
  std::string Read() const { return secrets_ + "/client/read.token"; }
  // Every secret of the set, and the wrong token the tests send.
  std::vector<std::string> Secrets() const {
    return {ReadTrimmed(secrets_ + "/client/admin.token"),
            ReadTrimmed(secrets_ + "/client/read.token"), ReadTrimmed(secrets_ + "/worker/token"),
            kWrongToken};
  }
  void ExpectNoSecretIn(const std::string& text, const std::string& what) {
    for (const std::string& secret : Secrets()) {
      EXPECT_THAT(text, Not(HasSubstr(secret))) << what;
    }
  }

  std::string dir_, secrets_;
  Coordinator coordinator_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
};

TEST_F(SecurityTest, MutualTlsAndTokensEndToEnd) {
  StartTlsCoordinator(/*mutual=*/true);
  for (int i = 0; i < 2; ++i) {
    const std::string log = absl::StrCat(dir_, "/worker-", i, ".log");
    auto worker = StartWorker(coordinator_.address, log, WorkerFlags(/*cert=*/true));
    ASSERT_TRUE(worker.ok()) << worker.status();
    workers_.push_back(std::move(*worker));
    ASSERT_TRUE(WaitForWorkerConnected(log, absl::Seconds(60)).ok()) << Slurp(log);
  }
  CommandResult r = Metactl(Admin(), {"submit", dir_ + "/job.json", "--watch"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("SUCCEEDED"));
  EXPECT_THAT(r.out, HasSubstr(" 2w"));  // both workers took part in a step
  const std::string job_id = r.out.substr(0, r.out.find('\n'));

  // A read token reads, and is refused what needs admin (exit 5, one line).
  r = Metactl(Read(), {"status", job_id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Metactl(Read(), {"fetch", job_id, "-o", dir_ + "/best.pt"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Metactl(Read(), {"cancel", job_id});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_THAT(r.err, StartsWith("metactl: PERMISSION_DENIED: "));
  r = Metactl(Read(), {"submit", dir_ + "/job.json"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  // No token, or a wrong one: UNAUTHENTICATED, exit 5, and the token is not echoed.
  r = Metactl("", {"list"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_THAT(r.err, StartsWith("metactl: UNAUTHENTICATED: "));
  r = Metactl(dir_ + "/wrong.token", {"list"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_THAT(r.err, StartsWith("metactl: UNAUTHENTICATED: "));
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  ExpectNoSecretIn(r.out + r.err, "metactl output");
  // Health needs no token (probes), but still TLS.
  r = Metactl("", {"health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");

  // Rotation without a restart: a new admin token replaces the old one in the file.
  const std::string rotated(48, 'r');
  std::ofstream(dir_ + "/new.token") << rotated << "\n";
  {
    std::ofstream(dir_ + "/tokens.new")
        << "admin " << rotated << "\n# broken: superuser " << kWrongToken << "\n";
    std::filesystem::rename(dir_ + "/tokens.new", dir_ + "/tokens");
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    r = Metactl(dir_ + "/new.token", {"list"});
    if (r.exit_code == 0) break;
    absl::SleepFor(absl::Milliseconds(200));  // the coordinator looks at the file every second
  } while (absl::Now() < deadline);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(job_id));
  EXPECT_EQ(Metactl(Admin(), {"list"}).exit_code, 5);

  // A line that cannot be parsed: the coordinator keeps the tokens it has and says which
  // line, without the line.
  {
    std::ofstream(dir_ + "/tokens.new")
        << "admin " << rotated << "\nsuperuser " << kWrongToken << "\n";
    std::filesystem::rename(dir_ + "/tokens.new", dir_ + "/tokens");
  }
  const std::string log_path = dir_ + "/coordinator.log";
  const absl::Time logged = absl::Now() + absl::Seconds(30);
  while (Slurp(log_path).find("line 2: the role must be") == std::string::npos &&
         absl::Now() < logged) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(Slurp(log_path), HasSubstr("line 2: the role must be admin or read"));
  EXPECT_EQ(Metactl(dir_ + "/new.token", {"list"}).exit_code, 0);

  workers_.clear();
  coordinator_.process.reset();
  ExpectNoSecretIn(Slurp(log_path), "coordinator log");
  for (int i = 0; i < 2; ++i) {
    ExpectNoSecretIn(Slurp(absl::StrCat(dir_, "/worker-", i, ".log")), "worker log");
  }
  ExpectNoSecretIn(Slurp(log_path), "coordinator log");
  EXPECT_THAT(Slurp(log_path), Not(HasSubstr(rotated)));
}

TEST_F(SecurityTest, WorkerWithoutAClientCertificateIsRefusedUnderMutualTls) {
  StartTlsCoordinator(/*mutual=*/true);
  const std::string log = dir_ + "/no-cert.log";
  auto worker = StartWorker(coordinator_.address, log, WorkerFlags(/*cert=*/false));
  ASSERT_TRUE(worker.ok()) << worker.status();
  auto exit_code = (*worker)->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit_code.ok()) << "the worker kept retrying: " << Slurp(log);
  EXPECT_EQ(*exit_code, 3) << Slurp(log);
  EXPECT_THAT(Slurp(log), HasSubstr("client certificate"));
  // A worker with the certificate but a wrong join token is refused too.
  const std::string wrong_log = dir_ + "/wrong-token.log";
  std::vector<std::string> flags = WorkerFlags(/*cert=*/true);
  flags[1] = "--token_file=" + dir_ + "/wrong.token";
  auto wrong = StartWorker(coordinator_.address, wrong_log, flags);
  ASSERT_TRUE(wrong.ok());
  exit_code = (*wrong)->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit_code.ok()) << Slurp(wrong_log);
  EXPECT_EQ(*exit_code, 3);
  EXPECT_THAT(Slurp(wrong_log), HasSubstr("unknown worker join token"));
  ExpectNoSecretIn(Slurp(wrong_log) + Slurp(dir_ + "/coordinator.log"), "logs");
}

TEST_F(SecurityTest, PlaintextAgainstTlsFailsAndTlsAgainstPlaintextFails) {
  StartTlsCoordinator(/*mutual=*/false);
  CommandResult r = Metactl(Admin(), {"list", "--deadline=5s"}, /*tls=*/false);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.err, StartsWith("metactl: UNAVAILABLE: "));
  EXPECT_EQ(Metactl(Admin(), {"list"}).exit_code, 0);

  const std::string plain_dir = dir_ + "/plain";
  std::filesystem::create_directories(plain_dir);
  auto plain = StartCoordinator(plain_dir, {"--insecure"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  std::swap(coordinator_, *plain);
  r = Metactl("", {"health", "--deadline=5s"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  r = Metactl("", {"health"}, /*tls=*/false);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Slurp(plain_dir + "/coordinator.log"), HasSubstr("WARNING: --insecure"));
}

TEST_F(SecurityTest, CoordinatorNeedsTlsFilesOrInsecure) {
  const std::string coordinator = BinaryPath("coordinator/metatrain-coordinator");
  auto r = RunCommand({coordinator, "--listen=127.0.0.1:0"}, absl::Seconds(60));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->err, HasSubstr("pass --tls_cert FILE and --tls_key FILE"));
  EXPECT_THAT(r->err, HasSubstr("--insecure"));
  EXPECT_EQ(CountLines(r->err), 1) << r->err;
  // A key that is not the certificate's, a missing file: one line naming the flag.
  r = RunCommand(
      {coordinator, "--listen=127.0.0.1:0", "--tls_cert=" + secrets_ + "/coordinator/tls.crt",
       "--tls_key=" + secrets_ + "/worker/tls.key"},
      absl::Seconds(60));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->err, HasSubstr("is not the key of --tls_cert"));
  r = RunCommand({coordinator, "--insecure", "--tokens_file=" + dir_ + "/none"}, absl::Seconds(60));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->err, HasSubstr("--tokens_file"));
  EXPECT_EQ(CountLines(r->err), 1) << r->err;
  r = RunCommand({coordinator, "--insecure", "--tls_cert=" + secrets_ + "/coordinator/tls.crt"},
                 absl::Seconds(60));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->err, HasSubstr("--insecure does not go with"));
}

}  // namespace
}  // namespace metatrain::e2e
