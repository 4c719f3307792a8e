#ifndef METATRAIN_TESTS_COMMON_DATA_DATA_TEST_UTIL_H_
#define METATRAIN_TESTS_COMMON_DATA_DATA_TEST_UTIL_H_

// Shared by the dataset tests: where a persistent decode cache lives, scratch folders, and
// PNG folders written with libpng.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/data/png_encoder.h"
#include "gtest/gtest.h"

#ifndef ASSERT_OK
#define ASSERT_OK(expr)                             \
  do {                                              \
    const auto& metatrain_s_ = (expr);              \
    ASSERT_TRUE(metatrain_s_.ok()) << metatrain_s_; \
  } while (0)
#endif

namespace metatrain::data::testing {

inline std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

// The build tree: ctest passes it in the environment, and the compiled-in path serves a
// test binary run by hand. (The Omniglot copy is found by tests/testing/test_data.h.)
inline std::string BinaryDir() { return EnvOr("METATRAIN_BINARY_DIR", METATRAIN_TEST_BINARY_DIR); }

// A decode cache that outlives one test process (ctest runs each case in its own
// process): decoding 32,460 PNGs happens once per build tree.
inline std::string TestCacheDir() { return BinaryDir() + "/test_data_cache"; }

// Removes the scratch folders of this process when it exits (each ctest case is a process).
class ScratchRegistry {
 public:
  static ScratchRegistry& Get() {
    static ScratchRegistry registry;
    return registry;
  }
  void Add(const std::string& dir) { dirs_.push_back(dir); }
  ~ScratchRegistry() {
    std::error_code ec;
    for (const std::string& dir : dirs_) std::filesystem::remove_all(dir, ec);
  }

 private:
  std::vector<std::string> dirs_;
};

// A fresh, empty folder for one test, removed at process exit.
inline std::string ScratchDir(const std::string& name) {
  const std::string dir = absl::StrCat(BinaryDir(), "/test_scratch/", name, "-", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ScratchRegistry::Get().Add(dir);
  return dir;
}

// A gray image whose pixels depend on (seed, position), distinct per seed.
inline DecodedImage PatternImage(int channels, int height, int width, int seed) {
  DecodedImage image;
  image.channels = channels;
  image.height = height;
  image.width = width;
  image.pixels.resize(channels * height * width);
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels[i] = static_cast<uint8_t>((i * 37 + seed * 101 + (i / width) * 13) % 256);
  }
  return image;
}

}  // namespace metatrain::data::testing

#endif  // METATRAIN_TESTS_COMMON_DATA_DATA_TEST_UTIL_H_
