#include "common/data/dataset_cache.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace metatrain::data {
namespace {

constexpr char kMagic[8] = {'M', 'T', 'I', 'M', 'G', 'S', 'E', 'T'};
constexpr uint32_t kVersion = 1;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t Crc32(const char* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths; feed in chunks.
  while (size > 0) {
    const uInt n = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), n);
    data += n;
    size -= n;
  }
  return static_cast<uint32_t>(crc);
}

// Bounds-checked little-endian reader over the file contents.
class Cursor {
 public:
  Cursor(const std::string& bytes, size_t end) : bytes_(bytes), end_(end) {}
  bool U32(uint32_t& v) {
    if (pos_ + 4 > end_) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(bytes_[pos_ + i])} << (8 * i);
    pos_ += 4;
    return true;
  }
  bool U64(uint64_t& v) {
    if (pos_ + 8 > end_) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(bytes_[pos_ + i])} << (8 * i);
    pos_ += 8;
    return true;
  }
  bool Bytes(size_t n, const char*& p) {
    if (n > end_ - pos_) return false;
    p = bytes_.data() + pos_;
    pos_ += n;
    return true;
  }
  size_t pos() const { return pos_; }
  void Seek(size_t pos) { pos_ = pos; }

 private:
  const std::string& bytes_;
  size_t end_;
  size_t pos_ = 0;
};

}  // namespace

absl::Status WriteImageSetCache(const std::string& path, const std::string& key,
                                const ImageSet& images) {
  std::string out(kMagic, sizeof(kMagic));
  PutU32(out, kVersion);
  PutU32(out, key.size());
  out += key;
  PutU32(out, images.channels);
  PutU32(out, images.height);
  PutU32(out, images.width);
  PutU64(out, images.size());
  PutU32(out, images.class_names.size());
  for (const std::string& name : images.class_names) {
    PutU32(out, name.size());
    out += name;
  }
  for (int32_t label : images.labels) PutU32(out, static_cast<uint32_t>(label));
  out.append(reinterpret_cast<const char*>(images.pixels.data()), images.pixels.size());
  PutU32(out, Crc32(out.data() + 12, out.size() - 12));

  const std::filesystem::path target(path);
  std::error_code ec;
  std::filesystem::create_directories(target.parent_path(), ec);
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid(), ".", counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("dataset cache: cannot create ", tmp, ": ", std::strerror(errno)));
  }
  size_t written = 0;
  while (written < out.size()) {
    const ssize_t n = ::write(fd, out.data() + written, out.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string error = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::InternalError(absl::StrCat("dataset cache: cannot write ", tmp, ": ", error));
    }
    written += n;
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string error = std::strerror(errno);
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("dataset cache: cannot sync ", tmp, ": ", error));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string error = std::strerror(errno);
    ::unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("dataset cache: cannot rename ", tmp, " to ", path, ": ", error));
  }
  return absl::OkStatus();
}

absl::StatusOr<ImageSet> ReadImageSetCache(const std::string& path, const std::string& key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": no dataset cache"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  auto corrupt = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat(path, ": corrupt dataset cache (", why, ")"));
  };
  if (bytes.size() < 16 || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return corrupt("bad magic");
  }
  Cursor cur(bytes, bytes.size() - 4);
  cur.Seek(8);
  uint32_t version = 0, key_len = 0;
  cur.U32(version);
  if (version != kVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": dataset cache version ", version, ", expected ", kVersion));
  }
  Cursor crc_cur(bytes, bytes.size());
  crc_cur.Seek(bytes.size() - 4);
  uint32_t stored_crc = 0;
  crc_cur.U32(stored_crc);
  if (Crc32(bytes.data() + 12, bytes.size() - 16) != stored_crc) return corrupt("CRC mismatch");
  const char* p = nullptr;
  if (!cur.U32(key_len) || !cur.Bytes(key_len, p)) return corrupt("truncated key");
  if (std::string(p, key_len) != key) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": dataset cache is stale (built from other sources)"));
  }
  ImageSet images;
  uint32_t channels = 0, height = 0, width = 0, classes = 0;
  uint64_t count = 0;
  if (!cur.U32(channels) || !cur.U32(height) || !cur.U32(width) || !cur.U64(count) ||
      !cur.U32(classes)) {
    return corrupt("truncated header");
  }
  images.channels = channels;
  images.height = height;
  images.width = width;
  images.class_names.reserve(classes);
  for (uint32_t c = 0; c < classes; ++c) {
    uint32_t len = 0;
    if (!cur.U32(len) || !cur.Bytes(len, p)) return corrupt("truncated class names");
    images.class_names.emplace_back(p, len);
  }
  const uint64_t image_bytes = uint64_t{channels} * height * width;
  if (count > bytes.size() || (image_bytes > 0 && count > bytes.size() / image_bytes)) {
    return corrupt("image count too large");
  }
  images.labels.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t label = 0;
    if (!cur.U32(label)) return corrupt("truncated labels");
    if (label >= classes) return corrupt("label out of range");
    images.labels[i] = static_cast<int32_t>(label);
  }
  if (!cur.Bytes(count * image_bytes, p)) return corrupt("truncated pixels");
  if (cur.pos() != bytes.size() - 4) return corrupt("trailing bytes");
  images.pixels.assign(reinterpret_cast<const uint8_t*>(p),
                       reinterpret_cast<const uint8_t*>(p) + count * image_bytes);
  return images;
}

std::string DefaultCacheDir(const std::string& data_dir) {
  if (const char* env = std::getenv("METATRAIN_CACHE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/metatrain");
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return absl::StrCat(home, "/.cache/metatrain");
  }
  // No home (a bare container): next to the data if we may write there.
  if (!data_dir.empty() && ::access(data_dir.c_str(), W_OK) == 0) return data_dir;
  std::error_code ec;
  const std::filesystem::path tmp = std::filesystem::temp_directory_path(ec);
  return (ec ? std::string("/tmp") : tmp.string()) + "/metatrain-cache";
}

}  // namespace metatrain::data
