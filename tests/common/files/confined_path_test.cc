// ConfinedRoots over real directories, files and symlinks in a temporary directory.

#include "common/files/confined_path.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace metatrain::files {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ConfinedPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "confined-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    top_ = fs::canonical(pattern);
    root_ = top_ / "root";
    fs::create_directories(root_ / "omniglot");
    fs::create_directories(top_ / "outside" / "secret");
    std::ofstream(root_ / "tasks.pt") << "inside";
    std::ofstream(top_ / "outside" / "secret.pt") << "outside";
    fs::create_symlink(top_ / "outside", root_ / "escape");   // escapes
    fs::create_symlink(root_ / "omniglot", root_ / "alias");  // stays inside
    fs::create_symlink(top_ / "outside" / "secret.pt", root_ / "link.pt");
    fs::create_directories(top_ / "root-sibling");  // shares the root's name as a prefix
    std::ofstream(top_ / "root-sibling" / "x.pt") << "sibling";
    auto roots = ConfinedRoots::Make("--data_root", {root_.string()});
    ASSERT_TRUE(roots.ok()) << roots.status();
    roots_ = *roots;
  }
  void TearDown() override { fs::remove_all(top_); }

  // The one message every refusal must carry, whatever its reason.
  std::string Refusal(const std::string& path) {
    return "tasks.data_dir '" + path + "': not found under --data_root";
  }
  void ExpectRefused(const std::string& path) {
    auto resolved = roots_.Resolve("tasks.data_dir", path);
    ASSERT_FALSE(resolved.ok()) << path << " resolved to " << *resolved;
    EXPECT_EQ(resolved.status().code(), absl::StatusCode::kInvalidArgument) << path;
    EXPECT_EQ(resolved.status().message(), Refusal(path));
  }

  fs::path top_, root_;
  ConfinedRoots roots_;
};

TEST_F(ConfinedPathTest, PathsInsideResolveToTheirCanonicalForm) {
  auto dir = roots_.Resolve("tasks.data_dir", (root_ / "omniglot").string());
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, (root_ / "omniglot").string());
  auto file =
      roots_.Resolve("tasks.tensor_file", (root_ / "omniglot" / ".." / "tasks.pt").string());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*file, (root_ / "tasks.pt").string());
  // A symlink that stays inside is followed.
  auto alias = roots_.Resolve("tasks.data_dir", (root_ / "alias").string());
  ASSERT_TRUE(alias.ok()) << alias.status();
  EXPECT_EQ(*alias, (root_ / "omniglot").string());
  // The root itself.
  EXPECT_TRUE(roots_.Resolve("tasks.data_dir", root_.string()).ok());
}

TEST_F(ConfinedPathTest, EscapesAndMissingPathsGetOneIdenticalMessage) {
  ExpectRefused((root_ / "missing").string());                       // missing inside
  ExpectRefused((top_ / "outside" / "secret.pt").string());          // exists, absolute outside
  ExpectRefused((top_ / "outside" / "missing.pt").string());         // missing, outside
  ExpectRefused((root_ / ".." / "outside" / "secret.pt").string());  // climbs out with ..
  ExpectRefused((root_ / "escape" / "secret").string());             // symlinked directory
  ExpectRefused((root_ / "link.pt").string());                       // symlinked file
  ExpectRefused((top_ / "root-sibling" / "x.pt").string());          // name-prefix sibling
  ExpectRefused("/etc/passwd");
  ExpectRefused("/etc/nonexistent");
  ExpectRefused("");
  ExpectRefused(std::string("/etc/passwd\0.pt", 15));
}

TEST_F(ConfinedPathTest, RelativePathsResolveAgainstTheWorkingDirectory) {
  const fs::path before = fs::current_path();
  fs::current_path(top_);
  auto inside = roots_.Resolve("tasks.data_dir", "root/omniglot");
  auto outside = roots_.Resolve("tasks.data_dir", "outside/secret.pt");
  auto climbing = roots_.Resolve("tasks.data_dir", "root/../../../../etc/passwd");
  fs::current_path(before);
  ASSERT_TRUE(inside.ok()) << inside.status();
  EXPECT_EQ(*inside, (root_ / "omniglot").string());
  EXPECT_EQ(outside.status().message(), Refusal("outside/secret.pt"));
  EXPECT_EQ(climbing.status().message(), Refusal("root/../../../../etc/passwd"));
}

TEST_F(ConfinedPathTest, SeveralRootsAndRelativeRoots) {
  const fs::path before = fs::current_path();
  fs::current_path(top_);
  auto roots = ConfinedRoots::FromList("--data_root", "root,outside/secret,/nonexistent/root");
  fs::current_path(before);
  ASSERT_TRUE(roots.ok()) << roots.status();
  EXPECT_TRUE(roots->Resolve("x", (root_ / "tasks.pt").string()).ok());
  EXPECT_TRUE(roots->Resolve("x", (top_ / "outside" / "secret").string()).ok());
  EXPECT_FALSE(roots->Resolve("x", (top_ / "outside" / "secret.pt").string()).ok());
  EXPECT_FALSE(ConfinedRoots::FromList("--data_root", "a,,b").ok());
}

TEST_F(ConfinedPathTest, UnconfinedRootsStillNeedTheFileToExist) {
  ConfinedRoots open;
  EXPECT_FALSE(open.confined());
  EXPECT_TRUE(open.Resolve("initial_weights", (top_ / "outside" / "secret.pt").string()).ok());
  auto missing = open.Resolve("initial_weights", "/nonexistent/w.pt");
  EXPECT_EQ(missing.status().message(), "initial_weights '/nonexistent/w.pt': not found");
}

TEST_F(ConfinedPathTest, ReadFileBoundedReadsRefusesLargeFilesAndSymlinks) {
  auto bytes = ReadFileBounded("f", (root_ / "tasks.pt").string(), 100, "--max");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, "inside");
  auto large = ReadFileBounded("f", (root_ / "tasks.pt").string(), 3, "--max_checkpoint_mb");
  EXPECT_EQ(large.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(large.status().message(), HasSubstr("--max_checkpoint_mb"));
  // Resolve returns canonical paths; a symlink found at open time was put there since.
  EXPECT_FALSE(ReadFileBounded("f", (root_ / "link.pt").string(), 100, "--max").ok());
  EXPECT_EQ(ReadFileBounded("f", (root_ / "nope").string(), 100, "--max").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(ReadFileBounded("f", (root_ / "omniglot").string(), 100, "--max").ok());
}

}  // namespace
}  // namespace metatrain::files
