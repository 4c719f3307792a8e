#ifndef METATRAIN_COMMON_DATA_DATASET_CACHE_H_
#define METATRAIN_COMMON_DATA_DATASET_CACHE_H_

// An on-disk cache of a decoded, resized ImageSet, so that a process starts in a fraction
// of a second instead of decoding tens of thousands of PNGs.
//
// File format (all integers little-endian):
//   "MTIMGSET" | u32 version (1) | u32 key length | key bytes
//   | u32 channels | u32 height | u32 width | u64 images | u32 classes
//   | classes x (u32 length | name bytes) | images x i32 label | pixels (N*C*H*W bytes)
//   | u32 CRC-32 (zlib) of every byte after the version field and before the CRC.
// The key says what the cache was built from (source file sizes and mtimes, image size,
// pipeline version); a cache whose key differs from the caller's is stale.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/data/image_dataset.h"

namespace metatrain::data {

// Writes atomically: a unique temporary file in the same directory, fsync, rename. Safe
// against concurrent writers of the same path (last rename wins; every file is whole).
// Creates the directory if needed. INTERNAL / PERMISSION_DENIED-like errors as INTERNAL
// with the path.
absl::Status WriteImageSetCache(const std::string& path, const std::string& key,
                                const ImageSet& images);

// NOT_FOUND if the file does not exist, FAILED_PRECONDITION if it was built from other
// sources (key mismatch), DATA_LOSS if truncated or its checksum fails.
absl::StatusOr<ImageSet> ReadImageSetCache(const std::string& path, const std::string& key);

// Where caches for a dataset in `data_dir` go: $METATRAIN_CACHE_DIR if set; else
// $XDG_CACHE_HOME/metatrain; else $HOME/.cache/metatrain; else data_dir if writable; else
// <tmp>/metatrain-cache. The user's cache comes before the data folder on purpose: a data
// folder is often shared or read-only in intent even where the process (root, in
// containers) could write to it.
std::string DefaultCacheDir(const std::string& data_dir);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_DATASET_CACHE_H_
