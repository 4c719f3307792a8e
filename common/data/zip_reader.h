#ifndef METATRAIN_COMMON_DATA_ZIP_READER_H_
#define METATRAIN_COMMON_DATA_ZIP_READER_H_

// Read-only access to a zip archive (libzip). Lets loaders read a dataset as downloaded,
// without unpacking tens of thousands of small files.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

struct zip;

namespace metatrain::data {

class ZipReader {
 public:
  struct Entry {
    std::string name;  // path inside the archive, '/'-separated; directories end in '/'
    int64_t index = 0;
    uint64_t size = 0;
  };

  // NOT_FOUND if `path` does not exist, DATA_LOSS if it is not a readable zip (a
  // truncated download lacks the central directory and fails here).
  static absl::StatusOr<std::unique_ptr<ZipReader>> Open(const std::string& path);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  const std::vector<Entry>& entries() const { return entries_; }
  const std::string& path() const { return path_; }

  // The uncompressed bytes of entry `index`; DATA_LOSS naming the archive and entry on a
  // CRC mismatch or short read. Not thread-safe: one reader per thread.
  absl::StatusOr<std::string> Read(const Entry& entry);

 private:
  ZipReader(std::string path, zip* archive) : path_(std::move(path)), archive_(archive) {}
  std::string path_;
  zip* archive_;
  std::vector<Entry> entries_;
};

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_ZIP_READER_H_
