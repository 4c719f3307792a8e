// The command line of the four binaries, as users and scripts meet it: --help lists the
// binary's own flags with their defaults and exits 0; an unknown flag or a malformed value
// is one line on stderr naming the flag, exit status 2; the worker and metactl take the
// coordinator from $METATRAIN_COORDINATOR; `metactl health` asks a real coordinator.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/e2e/process.h"

namespace metatrain::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kEnv[] = "METATRAIN_COORDINATOR";

struct Binary {
  std::string name;  // as in its error lines
  std::string path;  // under the build directory
  std::set<std::string> flags;
  std::string some_default;            // one flag's line in --help, default included
  std::vector<std::string> malformed;  // a flag with a value of the wrong type
};

std::vector<Binary> Binaries() {
  return {
      {"metatrain-coordinator",
       "coordinator/metatrain-coordinator",
       {"listen",
        "checkpoint_dir",
        "max_running_jobs",
        "threads",
        "resume",
        "assignment_timeout_s",
        "metrics_listen",
        "metrics_retention",
        "no_worker_timeout",
        "quarantine_after",
        "quarantine_backoff",
        "speculative_duplicates",
        "worker_liveness_s",
        "watch_max_events",
        "memory_checkpoint_jobs",
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "insecure",
        "tokens_file",
        "worker_token_file",
        "max_queued_jobs_per_token",
        "data_root",
        "weights_root",
        "max_task_memory_mb",
        "max_meta_batch_memory_mb",
        "max_meta_batch_size",
        "max_checkpoint_mb",
        "max_tensor_file_mb",
        "max_checkpoint_download_mb",
        "max_message_mb",
        "max_concurrent_streams",
        "max_worker_outbox_mb",
        "deadline_factor",
        "min_deadline"},
       "  --listen (default: \"127.0.0.1:50051\")\n",
       {"--threads=abc"}},
      {"metatrain-worker",
       "worker/metatrain-worker",
       {"coordinator", "device", "threads", "capacity", "max_cached_jobs", "task_group_size",
        "data_dir", "name", "log_assignments", "metrics_listen", "tls_ca", "tls_cert", "tls_key",
        "tls_server_name", "insecure", "token_file", "data_root"},
       "  --capacity (default: 32)\n",
       {"--threads=abc"}},
      {"metactl",
       "tools/metactl/metactl",
       {"coordinator", "deadline", "watch", "which", "output", "job", "episodes", "split", "tasks",
        "inner_steps", "seed", "verbose", "tls_ca", "tls_cert", "tls_key", "tls_server_name",
        "insecure", "token_file"},
       "  --deadline (default: 15s)\n",
       {"--deadline", "soon"}},
      {"metatrain-train",
       "tools/metatrain-train",
       {"job", "steps", "out", "threads", "task_group_size", "seed"},
       "  --threads (default: 1)\n",
       {"--threads=abc"}},
  };
}

int CountLines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

CommandResult RunBinary(const std::string& path, std::vector<std::string> args) {
  args.insert(args.begin(), BinaryPath(path));
  auto result = RunCommand(args, absl::Seconds(60));
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : CommandResult{};
}

// The names of the flags a --help lists, from lines
// "  [-o, ]--[no]name[, --other-spelling] (default: ...)".
std::set<std::string> ListedFlags(const std::string& help) {
  static const std::regex flag_line(
      R"(\n  (?:-\w, )?--(?:\[no\])?(\w+)(?:, --[\w-]+)* \(default: )");
  std::set<std::string> names;
  for (std::sregex_iterator it(help.begin(), help.end(), flag_line), end; it != end; ++it) {
    names.insert((*it)[1]);
  }
  return names;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { unsetenv(kEnv); }
  void TearDown() override { unsetenv(kEnv); }
};

TEST_F(CliTest, HelpListsTheBinarysOwnFlagsWithDefaults) {
  for (const Binary& binary : Binaries()) {
    for (const char* help : {"--help", "-h"}) {
      CommandResult r = RunBinary(binary.path, {help});
      EXPECT_EQ(r.exit_code, 0) << binary.name << " " << help << ": " << r.err;
      EXPECT_EQ(r.err, "") << binary.name;
      EXPECT_THAT(r.out, StartsWith("usage: " + binary.name + " ")) << binary.name;
      EXPECT_EQ(ListedFlags(r.out), binary.flags) << binary.name << ":\n" << r.out;
      EXPECT_THAT(r.out, HasSubstr(binary.some_default)) << binary.name;
      EXPECT_THAT(r.out, Not(HasSubstr("No flags matched"))) << binary.name;
      EXPECT_THAT(r.out, Not(HasSubstr("flagfile"))) << binary.name;
    }
    // Help wins over whatever else is on the line, as it did in the hand-written parsers.
    CommandResult r = RunBinary(binary.path, {"--bogus", "--help"});
    EXPECT_EQ(r.exit_code, 2) << binary.name << ": an error before --help is still an error";
    r = RunBinary(binary.path, {"--help", "--bogus"});
    EXPECT_EQ(r.exit_code, 0) << binary.name << ": " << r.err;
    r = RunBinary(binary.path, {"--version"});
    EXPECT_EQ(r.exit_code, 0) << binary.name;
    EXPECT_THAT(r.out, StartsWith(binary.name + " ")) << binary.name;
  }
}

TEST_F(CliTest, MetactlHelpListsTheCommands) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--help"}, {"help"}, {"evaluate", "--help"}, {"health", "-h"}}) {
    CommandResult r = RunBinary("tools/metactl/metactl", args);
    EXPECT_EQ(r.exit_code, 0) << args[0];
    for (const char* command :
         {"\n  submit JOB.json [--watch]", "\n  status JOB", "\n  list", "\n  history JOB",
          "\n  watch JOB", "\n  cancel JOB", "\n  fetch JOB [--which best|final] -o FILE",
          "\n  health", "\n  evaluate CHECKPOINT.pt --job JOB.json", "\n  algorithms"}) {
      EXPECT_THAT(r.out, HasSubstr(command)) << args[0];
    }
    EXPECT_THAT(r.out, HasSubstr("  -o, --output (default: \"\")\n"));
    EXPECT_THAT(r.out, HasSubstr("  --coordinator (default: \"127.0.0.1:50051\", or "
                                 "$METATRAIN_COORDINATOR if set)\n"));
  }
}

// The catalogue needs no coordinator; its text is AlgorithmCatalog()'s (docs check).
TEST_F(CliTest, MetactlAlgorithmsListsEveryAlgorithm) {
  CommandResult r = RunBinary("tools/metactl/metactl", {"algorithms"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* name :
       {"maml\n", "\nfomaml\n", "\nreptile\n", "\nmeta_sgd\n", "\nanil\n", "\nprotonet\n"}) {
    EXPECT_THAT(r.out, HasSubstr(name));
  }
  EXPECT_THAT(r.out, HasSubstr("Prototypical Networks for Few-shot Learning"));
  r = RunBinary("tools/metactl/metactl", {"algorithms", "extra"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("algorithms takes no arguments"));
}

TEST_F(CliTest, UnknownFlagsAndMalformedValuesAreOneLineExitTwo) {
  for (const Binary& binary : Binaries()) {
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"--bogus"}, {"--bogus=1"}, binary.malformed}) {
      const std::string flag = args[0].substr(0, args[0].find('='));
      CommandResult r = RunBinary(binary.path, args);
      EXPECT_EQ(r.exit_code, 2) << binary.name << " " << args[0] << ": " << r.err;
      EXPECT_THAT(r.err, StartsWith(binary.name + ": ")) << binary.name;
      EXPECT_THAT(r.err, HasSubstr(flag)) << binary.name;
      EXPECT_EQ(CountLines(r.err), 1) << binary.name << ": " << r.err;
      EXPECT_EQ(r.out, "") << binary.name;
    }
  }
  // A flag that needs a value, given none.
  CommandResult r = RunBinary("tools/metatrain-train", {"--job"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--job needs a value"));
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  // metactl keeps its own error format and exit codes.
  r = RunBinary("tools/metactl/metactl", {"list", "--bogus"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "metactl: INVALID_ARGUMENT: unknown flag --bogus (see metactl --help)\n");
  r = RunBinary("tools/metactl/metactl", {"list", "--watch"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--watch goes with submit"));
  r = RunBinary("tools/metactl/metactl", {"status", "job-1", "--job", "j.json"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--job goes with evaluate"));
  r = RunBinary("tools/metactl/metactl", {});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("no command"));
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
}

TEST_F(CliTest, ValuesOutOfRangeAreOneLineExitTwo) {
  for (const auto& [path, args, message] :
       std::vector<std::tuple<std::string, std::vector<std::string>, std::string>>{
           {"worker/metatrain-worker", {"--threads", "0"}, "--threads must be a positive"},
           {"worker/metatrain-worker", {"--capacity=-3"}, "--capacity must be a positive"},
           {"worker/metatrain-worker",
            {"--max_cached_jobs=0"},
            "--max_cached_jobs must be a positive"},
           {"worker/metatrain-worker", {"--coordinator="}, "--coordinator must not be empty"},
           {"worker/metatrain-worker", {"stray"}, "unexpected argument \"stray\""},
           {"coordinator/metatrain-coordinator", {"--max_running_jobs=0"}, "--max_running_jobs"},
           {"coordinator/metatrain-coordinator",
            {"--insecure", "--metrics_listen=localhost"},
            "--metrics_listen must be HOST:PORT"},
           {"coordinator/metatrain-coordinator",
            {"--watch_max_events=0"},
            "--watch_max_events must be >= 1"},
           {"coordinator/metatrain-coordinator",
            {"--metrics_retention=-1s"},
            "--metrics_retention must not be negative"},
           {"worker/metatrain-worker",
            {"--metrics_listen", "9464"},
            "--metrics_listen must be HOST:PORT"},
           {"coordinator/metatrain-coordinator",
            {"--insecure", "--data_root="},
            "--data_root must name at least one directory"},
           {"coordinator/metatrain-coordinator",
            {"--insecure", "--weights_root=a,,b"},
            "--weights_root must name at least one directory"},
           {"coordinator/metatrain-coordinator",
            {"--insecure", "--max_task_memory_mb=0"},
            "--max_task_memory_mb must be in [1, 2^40]"},
           {"coordinator/metatrain-coordinator",
            {"--insecure", "--max_message_mb=4096"},
            "--max_message_mb must be in [1, 2047]"},
           {"worker/metatrain-worker", {"--data_root="}, "--data_root must name at least one"},
           {"tools/metatrain-train", {}, "--job is required"},
           {"tools/metatrain-train", {"--job", "j.json", "--steps", "0"}, "--steps must be"},
           {"tools/metactl/metactl", {"health", "--deadline=0s"}, "--deadline must be positive"},
       }) {
    CommandResult r = RunBinary(path, args);
    EXPECT_EQ(r.exit_code, 2) << path << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(message)) << path;
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
  }
}

// Issue #14: a spec that would make the process allocate terabytes is refused at once.
TEST_F(CliTest, MetatrainTrainRefusesOversizedSpecsBeforeAllocating) {
  const std::string dir = MakeTempDir("metatrain-cli-");
  ASSERT_FALSE(dir.empty());
  for (const auto& [json, message] : std::vector<std::pair<std::string, std::string>>{
           {R"({"algorithm": "maml", "tasks": {"family": "sinusoid", "shots": 2000000000}})",
            "tasks.shots must be <= 10000 (got 2000000000)"},
           {R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
                "meta_batch_size": 2000000000})",
            "meta_batch_size must be <= 10000 (got 2000000000)"},
       }) {
    const std::string path = dir + "/huge.json";
    std::ofstream(path) << json;
    CommandResult r = RunBinary("tools/metatrain-train", {"--job", path});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr(message));
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
  }
}

TEST_F(CliTest, WorkerTakesTheCoordinatorFromTheEnvironment) {
  const std::string dir = MakeTempDir("metatrain-cli-");
  ASSERT_FALSE(dir.empty());
  // Unset or empty: the documented default.
  setenv(kEnv, "", 1);
  CommandResult r = RunBinary("worker/metatrain-worker", {"--help"});
  EXPECT_THAT(r.out, HasSubstr("  --coordinator (default: \"127.0.0.1:50051\", or "
                               "$METATRAIN_COORDINATOR if set)\n"));

  auto coordinator = StartCoordinator(dir);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  // Set: the worker connects there without --coordinator.
  setenv(kEnv, coordinator->address.c_str(), 1);
  r = RunBinary("worker/metatrain-worker", {"--help"});
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("if set; now: \"", coordinator->address, "\")\n")));
  const std::string from_env = dir + "/from-env.log";
  auto worker = ChildProcess::Start(
      {BinaryPath("worker/metatrain-worker"), "--insecure", "--name", "env"}, from_env);
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_TRUE(WaitForWorkerConnected(from_env, absl::Seconds(60)).ok());

  // --coordinator still wins over the environment.
  setenv(kEnv, absl::StrCat("127.0.0.1:", UnusedPort()).c_str(), 1);
  const std::string from_flag = dir + "/from-flag.log";
  auto flagged = StartWorker(coordinator->address, from_flag, {"--name", "flag"});
  ASSERT_TRUE(flagged.ok()) << flagged.status();
  EXPECT_TRUE(WaitForWorkerConnected(from_flag, absl::Seconds(60)).ok());
}

TEST_F(CliTest, MetactlHealthReportsServingOrFailsInOneLine) {
  const std::string dir = MakeTempDir("metatrain-cli-");
  ASSERT_FALSE(dir.empty());
  auto coordinator = StartCoordinator(dir);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  const std::string metactl = "tools/metactl/metactl";

  CommandResult r =
      RunBinary(metactl, {"--coordinator", coordinator->address, "--insecure", "health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  EXPECT_EQ(r.err, "");
  // Flags after the command, and a deadline.
  r = RunBinary(metactl, {"health", "--coordinator=" + coordinator->address, "--deadline", "10s",
                          "--insecure"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  // The address from the environment, as docker-compose would set it.
  setenv(kEnv, coordinator->address.c_str(), 1);
  r = RunBinary(metactl, {"health", "--insecure"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  unsetenv(kEnv);
  r = RunBinary(metactl, {"--coordinator", coordinator->address, "--insecure", "health", "extra"});
  EXPECT_EQ(r.exit_code, 2);

  // Nothing listening: exit 4 (coordinator unavailable), one line naming the address.
  const std::string nobody = absl::StrCat("127.0.0.1:", UnusedPort());
  r = RunBinary(metactl, {"--coordinator", nobody, "--insecure", "health", "--deadline=5s"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.err, StartsWith("metactl: UNAVAILABLE: "));
  EXPECT_THAT(r.err, HasSubstr(nobody));
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace metatrain::e2e
