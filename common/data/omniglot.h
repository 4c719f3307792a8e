#ifndef METATRAIN_COMMON_DATA_OMNIGLOT_H_
#define METATRAIN_COMMON_DATA_OMNIGLOT_H_

// Omniglot (Lake et al. 2015) in its original layout:
//   <data_dir>/images_background.zip   or <data_dir>/images_background/<Alphabet>/characterNN/*.png
//   <data_dir>/images_evaluation.zip   or <data_dir>/images_evaluation/<Alphabet>/characterNN/*.png
// 964 background + 659 evaluation characters, 20 drawings each, 105x105 1-bit PNGs.
//
// Pixel convention: 255 = ink, 0 = background (the PNGs store white paper, black ink; like
// learn2learn's `1 - ToTensor(img)` and cbfinn/maml's `1 - img/255` we invert so that the
// stroke is the signal). Resizing: Pillow-exact LANCZOS of the 8-bit gray image, then the
// inversion — what learn2learn's pipeline computes (see NOTE [Lanczos as in Pillow]).

#include <string>

#include "absl/status/statusor.h"
#include "common/data/image_dataset.h"

namespace metatrain::data {

inline constexpr int kOmniglotBackgroundCharacters = 964;
inline constexpr int kOmniglotEvaluationCharacters = 659;
inline constexpr int kOmniglotDrawingsPerCharacter = 20;

struct OmniglotOptions {
  int image_size = 28;
  // Empty: DefaultCacheDir(data_dir) (see dataset_cache.h).
  std::string cache_dir;
  bool use_cache = true;
  // Decoding threads; 0 = min(hardware threads, 8).
  int threads = 0;
};

// What a load did; for logs, benchmarks and tests.
struct OmniglotLoadInfo {
  bool from_cache = false;
  std::string cache_path;
  // Set when the cache could not be read (corrupt, stale: then rebuilt) or written.
  std::string cache_note;
  double seconds = 0;
};

// Loads all 1623 characters. Class names are "<set>/<Alphabet>/<character>" with set
// "images_background" or "images_evaluation"; classes are sorted by name (background
// first), drawings within a class by file name. Errors: NOT_FOUND "tasks.data_dir: no
// Omniglot found in ..." when neither the zip nor the folder of a set exists; DATA_LOSS
// naming the zip/folder/file for a truncated zip, a corrupt PNG, a missing character or a
// character without exactly 20 drawings. A corrupt or stale cache is rebuilt. Thread-safe
// (no shared state besides the cache file, which is replaced atomically).
absl::StatusOr<ImageSet> LoadOmniglot(const std::string& data_dir, const OmniglotOptions& options,
                                      OmniglotLoadInfo* info = nullptr);

// "images_background/Latin/character01" -> "images_background/Latin".
std::string OmniglotAlphabet(const std::string& class_name);
// True for classes of images_background.
bool IsOmniglotBackground(const std::string& class_name);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_OMNIGLOT_H_
