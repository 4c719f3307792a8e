#include "tests/testing/test_data.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace metatrain::testing {
namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// The checkout's root: ctest passes it in the environment (cmake/MetatrainTest.cmake);
// the compiled-in path serves a test binary run by hand.
std::string SourceDir() {
  const std::string from_env = Env("METATRAIN_SOURCE_DIR");
  return from_env.empty() ? METATRAIN_TEST_SOURCE_DIR : from_env;
}

std::string SharedOmniglotDir() { return SourceDir() + "/../shared/data/omniglot"; }

bool HoldsOmniglot(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::exists(dir + "/images_background.zip", ec) &&
         std::filesystem::exists(dir + "/images_evaluation.zip", ec);
}

}  // namespace

absl::StatusOr<std::string> FindOmniglot() {
  std::vector<std::string> candidates;
  const std::string data_dir = Env("METATRAIN_DATA_DIR");
  if (!data_dir.empty()) {
    candidates.push_back(data_dir + "/omniglot");
    candidates.push_back(data_dir);
  }
  candidates.push_back(SharedOmniglotDir());
  for (const std::string& dir : candidates) {
    if (HoldsOmniglot(dir)) return dir;
  }
  return absl::NotFoundError(absl::StrCat(
      "Omniglot test data not found: no images_background.zip and images_evaluation.zip in ",
      absl::StrJoin(candidates, " or "), data_dir.empty() ? " (METATRAIN_DATA_DIR is not set)" : "",
      ". Get the two zips from https://github.com/brendenlake/omniglot (folder python/; "
      "docs/data.md) and put them in ../shared/data/omniglot beside the checkout, or in "
      "$METATRAIN_DATA_DIR/omniglot."));
}

std::string OmniglotDir() {
  absl::StatusOr<std::string> found = FindOmniglot();
  return found.ok() ? *found : SharedOmniglotDir();
}

bool TestDataRequired() {
  const std::string value = Env("METATRAIN_REQUIRE_DATA");
  return !value.empty() && value != "0";
}

}  // namespace metatrain::testing
