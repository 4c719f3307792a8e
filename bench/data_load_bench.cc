// Omniglot start-up cost: a cold decode of the 32,460 PNGs (zip -> PNG -> Lanczos ->
// cache) against a load from the decode cache.
//   data_load_bench [omniglot_dir] [image_size] [threads]

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/data/omniglot.h"

int main(int argc, char** argv) {
  using metatrain::data::LoadOmniglot;
  using metatrain::data::OmniglotLoadInfo;
  using metatrain::data::OmniglotOptions;
  const std::string dir = argc > 1 ? argv[1] : "../shared/data/omniglot";
  OmniglotOptions options;
  options.image_size = argc > 2 ? std::atoi(argv[2]) : 28;
  options.threads = argc > 3 ? std::atoi(argv[3]) : 0;
  options.cache_dir = (std::filesystem::temp_directory_path() /
                       ("metatrain-bench-cache-" + std::to_string(::getpid())))
                          .string();
  for (const char* phase : {"cold decode", "cached load", "cached load"}) {
    OmniglotLoadInfo info;
    const auto images = LoadOmniglot(dir, options, &info);
    if (!images.ok()) {
      std::fprintf(stderr, "%s\n", std::string(images.status().message()).c_str());
      return 1;
    }
    std::printf("%-12s %7.3f s  (%lld images %lldx%lld, from_cache=%d)\n", phase, info.seconds,
                static_cast<long long>(images->size()), static_cast<long long>(images->height),
                static_cast<long long>(images->width), info.from_cache);
  }
  std::filesystem::remove_all(options.cache_dir);
  return 0;
}
