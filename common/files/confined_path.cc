#include "common/files/confined_path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace metatrain::files {
namespace {

namespace fs = std::filesystem;

// Whether `path` is `root` or below it; both canonical. Compared component by component,
// so "/data-old" is not inside "/data".
bool IsWithin(const fs::path& path, const fs::path& root) {
  auto p = path.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++p) {
    if (p == path.end() || *p != *r) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<ConfinedRoots> ConfinedRoots::Make(std::string setting,
                                                  std::vector<std::string> roots) {
  ConfinedRoots out;
  out.setting_ = std::move(setting);
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (ec) return absl::InternalError(absl::StrCat("working directory: ", ec.message()));
  for (const std::string& root : roots) {
    if (root.empty() || root.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(out.setting_, ": empty directory name in the list"));
    }
    fs::path p(root);
    if (p.is_relative()) p = cwd / p;
    std::string normal = p.lexically_normal().string();
    while (normal.size() > 1 && normal.back() == '/') normal.pop_back();  // "dir/." -> "dir"
    out.roots_.push_back(normal);
  }
  return out;
}

absl::StatusOr<ConfinedRoots> ConfinedRoots::FromList(std::string setting, absl::string_view list) {
  std::vector<std::string> roots = absl::StrSplit(list, ',');
  if (list.empty()) roots.clear();
  return Make(std::move(setting), std::move(roots));
}

absl::StatusOr<std::string> ConfinedRoots::Resolve(absl::string_view field,
                                                   const std::string& path) const {
  // NOTE [One answer for missing and forbidden]: every refusal below is this one status.
  const absl::Status refused = absl::InvalidArgumentError(
      confined() ? absl::StrCat(field, " '", path, "': not found under ", setting_)
                 : absl::StrCat(field, " '", path, "': not found"));
  if (path.empty() || path.find('\0') != std::string::npos) return refused;
  std::error_code ec;
  fs::path p(path);
  if (p.is_relative()) {
    const fs::path cwd = fs::current_path(ec);
    if (ec) return refused;
    p = cwd / p;
  }
  // canonical() follows every symlink and "..", and fails for a path that does not exist.
  const fs::path real = fs::canonical(p, ec);
  if (ec) return refused;
  if (!confined()) return real.string();
  for (const std::string& root : roots_) {
    const fs::path real_root = fs::canonical(root, ec);
    if (ec) continue;  // a root that does not exist (yet) holds nothing
    if (IsWithin(real, real_root)) return real.string();
  }
  return refused;
}

absl::StatusOr<std::string> ReadFileBounded(absl::string_view field, const std::string& path,
                                            int64_t max_bytes, absl::string_view limit_name) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ELOOP || err == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat(field, " '", path, "': not found"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(field, " '", path, "': cannot open: ", std::strerror(err)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(field, " '", path, "': not a regular file"));
  }
  if (st.st_size > max_bytes) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(field, " '", path, "': ", HumanBytes(st.st_size),
                                                   " is over the limit of ", HumanBytes(max_bytes),
                                                   " (", limit_name, ")"));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  // The file may have changed size since fstat: keep what was there, never more.
  bytes.resize(got);
  ::close(fd);
  return bytes;
}

std::string HumanBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " bytes");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, units[unit]);
}

}  // namespace metatrain::files
