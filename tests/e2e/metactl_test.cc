// End-to-end: the metactl binary against a real coordinator (and workers), checking the
// exit codes and one-line errors that scripts and people rely on.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/meta/checkpoint.h"
#include "tests/e2e/process.h"

namespace metatrain::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Metactl() { return BinaryPath("tools/metactl/metactl"); }

int CountLines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

constexpr char kGoodJob[] = R"({
  "name": "metactl-e2e", "algorithm": "maml",
  "model": {"kind": "mlp", "hidden_sizes": [16, 16]},
  "tasks": {"family": "sinusoid", "shots": 5},
  "meta_batch_size": 4, "steps": 20, "test_tasks": 10, "seed": 3,
  "validation_interval": 5, "validation_tasks": 4,
  "inner": {"test_steps": 3}
})";

class MetactlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("metatrain-metactl-");
    ASSERT_FALSE(dir_.empty());
  }
  void StartCluster(int workers) {
    auto coordinator = StartCoordinator(dir_);
    ASSERT_TRUE(coordinator.ok()) << coordinator.status();
    coordinator_ = std::move(*coordinator);
    for (int i = 0; i < workers; ++i) {
      auto worker = StartWorker(coordinator_.address, absl::StrCat(dir_, "/worker-", i, ".log"));
      ASSERT_TRUE(worker.ok()) << worker.status();
      workers_.push_back(std::move(*worker));
    }
  }
  CommandResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {Metactl(), "--coordinator", coordinator_.address, "--insecure"});
    auto result = RunCommand(args, absl::Seconds(180));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult{};
  }
  void TearDown() override {
    workers_.clear();
    coordinator_.process.reset();
  }

  std::string dir_;
  Coordinator coordinator_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
};

TEST_F(MetactlTest, BadSpecExitsTwoNamingTheField) {
  StartCluster(0);
  const std::string path = dir_ + "/bad.json";
  WriteFile(path, R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
                     "inner": {"lr": -0.5}})");
  CommandResult r = Run({"submit", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith("metactl: INVALID_ARGUMENT: "));
  EXPECT_THAT(r.err, HasSubstr("inner.lr"));
  EXPECT_EQ(CountLines(r.err), 1) << r.err;

  WriteFile(path, R"({"algorithm": "maml", "tasks": {"family": "sinusoid", "shotz": 1}})");
  r = Run({"submit", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("shotz"));
  EXPECT_EQ(CountLines(r.err), 1) << r.err;

  r = Run({"submit", dir_ + "/missing.json"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("missing.json"));
}

TEST_F(MetactlTest, UsageErrorsExitTwo) {
  StartCluster(0);
  EXPECT_EQ(Run({}).exit_code, 2);
  EXPECT_EQ(Run({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(Run({"status"}).exit_code, 2);
  CommandResult r = Run({"fetch", "job-1", "--which", "worst", "-o", dir_ + "/x.pt"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--which"));
}

TEST_F(MetactlTest, UnknownJobExitsThree) {
  StartCluster(0);
  for (const char* command : {"status", "watch", "cancel", "history"}) {
    CommandResult r = Run({command, "no-such-job"});
    EXPECT_EQ(r.exit_code, 3) << command << ": " << r.err;
    EXPECT_THAT(r.err, StartsWith("metactl: NOT_FOUND: ")) << command;
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
  }
  CommandResult r = Run({"fetch", "no-such-job", "-o", dir_ + "/x.pt"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
}

TEST_F(MetactlTest, NoCoordinatorExitsFour) {
  coordinator_.address = absl::StrCat("127.0.0.1:", UnusedPort());
  for (std::vector<std::string> args :
       {std::vector<std::string>{"list"}, {"status", "job-1"}, {"watch", "job-1"}}) {
    CommandResult r = Run(args);
    EXPECT_EQ(r.exit_code, 4) << args[0] << ": " << r.err;
    EXPECT_THAT(r.err, StartsWith("metactl: UNAVAILABLE: "));
    EXPECT_THAT(r.err, HasSubstr(coordinator_.address));
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
  }
}

TEST_F(MetactlTest, SubmitWatchListFetchAndCancel) {
  StartCluster(2);
  const std::string path = dir_ + "/job.json";
  WriteFile(path, kGoodJob);
  CommandResult r = Run({"submit", path, "--watch"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
  const std::string job_id = lines[0];
  EXPECT_FALSE(job_id.empty());
  EXPECT_THAT(r.out, HasSubstr("SUCCEEDED"));
  EXPECT_THAT(r.out, HasSubstr("tasks: sinusoid, K = 5, 5 query points\n"
                               "meta-test (10 tasks, 3 inner steps)"));
  EXPECT_THAT(r.out, HasSubstr("loss      before "));
  EXPECT_THAT(r.out, HasSubstr("step 20/20"));

  r = Run({"status", job_id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("SUCCEEDED"));
  r = Run({"list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(job_id));
  EXPECT_THAT(r.out, HasSubstr("metactl-e2e"));

  // The validation curve, one CSV row per meta-validation, in step order.
  r = Run({"history", job_id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> rows = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(rows.size(), 5u) << r.out;
  EXPECT_EQ(rows[0],
            "step,loss_before,loss_after,loss_after_ci95,accuracy_before,accuracy_after,"
            "accuracy_after_ci95");
  for (int i = 1; i <= 4; ++i) {
    EXPECT_THAT(rows[i], StartsWith(absl::StrCat(5 * i, ","))) << r.out;
    EXPECT_THAT(rows[i], ::testing::EndsWith(",,,")) << "regression rows have no accuracy";
  }

  const std::string out = dir_ + "/final.pt";
  r = Run({"fetch", job_id, "--which", "final", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto state = meta::LoadStateDict(out);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE(state->empty());

  // A long job, cancelled: cancel succeeds, watching it then reports the cancellation.
  WriteFile(path, absl::StrReplaceAll(kGoodJob, {{"\"steps\": 20", "\"steps\": 1000000"}}));
  r = Run({"submit", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string long_job(absl::StripTrailingAsciiWhitespace(r.out));
  r = Run({"cancel", long_job});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Run({"watch", long_job});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("CANCELLED"));
}

}  // namespace
}  // namespace metatrain::e2e
