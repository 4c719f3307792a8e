// Issue #14 through a real coordinator over gRPC: paths outside the roots are refused with
// the same message as missing ones, oversized specs are refused at SubmitJob before anything
// is allocated, and the server's size limits hold (checkpoint download, message size).

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "common/meta/checkpoint.h"
#include "tests/coordinator/test_specs.h"
#include "tests/testing/coordinator_harness.h"
#include "tests/testing/in_process_worker.h"

namespace metatrain::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A tree with a data root, a weights root and a directory outside both, holding files a
// job could name, and symlinks from inside the roots to the outside:
//   top/data/tasks.pt  top/data/escape -> top/outside  top/data/secret.pt -> outside file
//   top/weights/w.pt   top/outside/{secret.pt, omniglot/, tasks.pt}
class JobPathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "job-paths-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    top_ = fs::canonical(pattern);
    fs::create_directories(top_ / "data");
    fs::create_directories(top_ / "weights");
    fs::create_directories(top_ / "outside" / "omniglot");
    const std::string tasks = TensorFileBytes();
    std::ofstream(top_ / "data" / "tasks.pt", std::ios::binary) << tasks;
    std::ofstream(top_ / "outside" / "tasks.pt", std::ios::binary) << tasks;
    std::ofstream(top_ / "outside" / "secret.pt") << "root:x:0:0";
    fs::create_symlink(top_ / "outside", top_ / "data" / "escape");
    fs::create_symlink(top_ / "outside" / "secret.pt", top_ / "data" / "secret.pt");
    options_.poll_interval = absl::Milliseconds(20);
    auto data = files::ConfinedRoots::Make("--data_root", {(top_ / "data").string()});
    auto weights = files::ConfinedRoots::Make("--weights_root", {(top_ / "weights").string()});
    ASSERT_TRUE(data.ok() && weights.ok());
    options_.data_roots = *data;
    options_.weights_roots = *weights;
  }
  void TearDown() override { fs::remove_all(top_); }

  // Regression tasks in a tensor file: 6 tasks of 4 support and 4 query examples.
  static std::string TensorFileBytes() {
    const at::Tensor x = at::randn({6, 4, 1}, at::TensorOptions().dtype(at::kFloat));
    auto bytes = meta::SerializeStateDict(
        {{"support_x", x}, {"support_y", x * 2}, {"query_x", x}, {"query_y", x * 2}});
    EXPECT_TRUE(bytes.ok());
    return *bytes;
  }

  static v1::JobSpec TensorFileSpec(const std::string& path) {
    v1::JobSpec spec = SmallSinusoidSpec("maml", 2);
    spec.mutable_tasks()->set_family("tensor_file");
    spec.mutable_tasks()->set_tensor_file(path);
    return spec;
  }

  fs::path top_;
  coordinator::CoordinatorOptions options_;
};

TEST_F(JobPathsTest, EscapesAreRefusedWithTheMessageOfAMissingFile) {
  auto h = CoordinatorHarness::Start(options_);
  ASSERT_TRUE(h.ok()) << h.status();
  const std::string data = (top_ / "data").string();
  const std::string outside = (top_ / "outside").string();
  struct Case {
    std::string field, path, root;
  };
  const std::vector<Case> cases = {
      // Missing inside the root: the reference answer.
      {"tasks.tensor_file", data + "/missing.pt", "--data_root"},
      // Exists, but outside: absolute, with "..", through a symlinked directory or file.
      {"tasks.tensor_file", outside + "/tasks.pt", "--data_root"},
      {"tasks.tensor_file", data + "/../outside/tasks.pt", "--data_root"},
      {"tasks.tensor_file", data + "/escape/tasks.pt", "--data_root"},
      {"tasks.tensor_file", data + "/secret.pt", "--data_root"},
      {"tasks.tensor_file", "/etc/passwd", "--data_root"},
      {"tasks.tensor_file", "/etc/nonexistent", "--data_root"},
      {"tasks.data_dir", outside + "/omniglot", "--data_root"},
      {"tasks.data_dir", data + "/escape/omniglot", "--data_root"},
      {"tasks.data_dir", "/root", "--data_root"},
      {"tasks.data_dir", data + "/nothing-here", "--data_root"},
      {"initial_weights", "/etc/shadow", "--weights_root"},
      {"initial_weights", "/etc/nonexistent", "--weights_root"},
      {"initial_weights", data + "/tasks.pt", "--weights_root"},  // a data root is not enough
      {"initial_weights", (top_ / "weights" / ".." / "outside" / "secret.pt").string(),
       "--weights_root"},
  };
  for (const Case& c : cases) {
    v1::JobSpec spec = SmallSinusoidSpec("maml", 2);
    if (c.field == "tasks.tensor_file") spec = TensorFileSpec(c.path);
    if (c.field == "tasks.data_dir") {
      spec = SmallImageSpec(2, 1);
      spec.mutable_tasks()->set_family("omniglot");
      spec.mutable_tasks()->set_data_dir(c.path);
    }
    if (c.field == "initial_weights") spec.set_initial_weights(c.path);
    auto submitted = (*h)->Submit(spec);
    ASSERT_FALSE(submitted.ok()) << c.path;
    EXPECT_EQ(submitted.status().code(), absl::StatusCode::kInvalidArgument) << c.path;
    // Word for word: nothing in the answer tells an existing file from a missing one.
    EXPECT_EQ(submitted.status().message(),
              c.field + " '" + c.path + "': not found under " + c.root);
  }
  auto listed = (*h)->coordinator().ListJobs();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs_size(), 0);
}

TEST_F(JobPathsTest, PathsInsideTheRootsTrainAndWorkersGetThePathAsSubmitted) {
  auto h = CoordinatorHarness::Start(options_);
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker worker((*h)->address());
  // Relative to the working directory, as job files write them.
  const fs::path before = fs::current_path();
  fs::current_path(top_);
  auto job = (*h)->Submit(TensorFileSpec("data/../data/tasks.pt"));
  ASSERT_TRUE(job.ok()) << job.status();
  auto events = (*h)->WatchToEnd(*job);
  fs::current_path(before);
  ASSERT_TRUE(events.ok() && !events->empty()) << events.status();
  const v1::JobStatus& status = events->back().status();
  EXPECT_EQ(status.state(), v1::SUCCEEDED) << status.error();
  EXPECT_EQ(status.spec().tasks().tensor_file(), "data/../data/tasks.pt");
}

// The check in SubmitJob is repeated where the file is opened: a symlink that pointed inside
// when the job was submitted and outside when it starts is refused then.
TEST_F(JobPathsTest, APathSwappedAfterSubmitIsRefusedWhenTheJobStarts) {
  auto h = CoordinatorHarness::Start(options_);
  ASSERT_TRUE(h.ok()) << h.status();
  // No worker: the first job holds the only running slot until it is cancelled.
  auto blocker = (*h)->Submit(SmallSinusoidSpec("maml", 1000));
  ASSERT_TRUE(blocker.ok()) << blocker.status();
  const fs::path link = top_ / "data" / "later.pt";
  fs::create_symlink(top_ / "data" / "tasks.pt", link);
  auto job = (*h)->Submit(TensorFileSpec(link.string()));
  ASSERT_TRUE(job.ok()) << job.status();
  fs::remove(link);
  fs::create_symlink(top_ / "outside" / "tasks.pt", link);
  ASSERT_TRUE((*h)->Cancel(*blocker).ok());
  auto events = (*h)->WatchToEnd(*job);
  ASSERT_TRUE(events.ok() && !events->empty()) << events.status();
  const v1::JobStatus& status = events->back().status();
  EXPECT_EQ(status.state(), v1::FAILED);
  EXPECT_THAT(status.error(),
              HasSubstr("tasks.tensor_file '" + link.string() + "': not found under --data_root"));
}

TEST(JobBoundsTest, OversizedSpecsAreRefusedAtSubmitBeforeAnythingIsAllocated) {
  coordinator::CoordinatorOptions options;
  options.job_limits.max_meta_batch_size = 64;  // a coordinator flag
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  struct Case {
    std::function<void(v1::JobSpec&)> edit;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](v1::JobSpec& s) { s.mutable_tasks()->set_shots(2000000000); },
       absl::StatusCode::kInvalidArgument, "tasks.shots must be <= 10000 (got 2000000000)"},
      {[](v1::JobSpec& s) { s.set_meta_batch_size(2000000000); },
       absl::StatusCode::kInvalidArgument, "meta_batch_size must be <= 64 (got 2000000000)"},
      {[](v1::JobSpec& s) { s.set_meta_batch_size(65); }, absl::StatusCode::kInvalidArgument,
       "meta_batch_size must be <= 64 (got 65)"},
      {[](v1::JobSpec& s) {
         s.mutable_tasks()->set_family("synthetic_images");
         s.mutable_model()->clear_hidden_sizes();
         s.mutable_model()->set_kind("conv");
         s.mutable_tasks()->set_ways(500);
         s.mutable_tasks()->set_shots(500);
         s.mutable_tasks()->set_image_size(128);
       },
       absl::StatusCode::kResourceExhausted, "over the limit max_task_memory_mb=2048"},
  };
  for (const Case& c : cases) {
    v1::JobSpec spec = SmallSinusoidSpec("maml", 2);
    c.edit(spec);
    const auto start = std::chrono::steady_clock::now();
    auto submitted = (*h)->Submit(spec);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(submitted.ok()) << c.message;
    EXPECT_EQ(submitted.status().code(), c.code) << submitted.status();
    EXPECT_THAT(std::string(submitted.status().message()), HasSubstr(c.message));
    EXPECT_LT(took, std::chrono::seconds(2));
  }
  auto listed = (*h)->coordinator().ListJobs();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs_size(), 0);
}

TEST(JobBoundsTest, CheckpointDownloadsAndMessagesAreBounded) {
  coordinator::CoordinatorOptions options;
  options.poll_interval = absl::Milliseconds(20);
  options.max_checkpoint_download_bytes = 1000;  // the sinusoid net's is about 8 KB
  options.max_receive_message_bytes = 64 << 10;
  auto h = CoordinatorHarness::Start(options);
  ASSERT_TRUE(h.ok()) << h.status();
  InProcessWorker worker((*h)->address());
  auto job = (*h)->Submit(SmallSinusoidSpec("maml", 2));
  ASSERT_TRUE(job.ok()) << job.status();
  auto events = (*h)->WatchToEnd(*job);
  ASSERT_TRUE(events.ok() && !events->empty());
  ASSERT_EQ(events->back().status().state(), v1::SUCCEEDED);
  auto fetched = (*h)->Fetch(*job, "best");
  EXPECT_EQ(fetched.status().code(), absl::StatusCode::kResourceExhausted) << fetched.status();
  EXPECT_THAT(std::string(fetched.status().message()), HasSubstr("--max_checkpoint_download_mb"));
  // A request over the server's message limit never reaches the handler.
  v1::JobSpec big = SmallSinusoidSpec("maml", 2);
  big.set_name(std::string(100 << 10, 'x'));
  auto refused = (*h)->Submit(big);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
}

}  // namespace
}  // namespace metatrain::testing
