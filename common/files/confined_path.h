#ifndef METATRAIN_COMMON_FILES_CONFINED_PATH_H_
#define METATRAIN_COMMON_FILES_CONFINED_PATH_H_

// Paths that come from users (a JobSpec's tasks.data_dir, tasks.tensor_file,
// initial_weights) are confined to directories the operator configured (--data_root,
// --weights_root). NOTE [One answer for missing and forbidden]: a path that does not exist,
// lies outside every root, climbs out with "..", or reaches outside through a symlink gets
// the same error, word for word, so that the answer says nothing about what exists outside
// the roots. See docs/security.md, "File paths".
//
// Pure functions of their arguments and the file system; no global state. Thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace metatrain::files {

class ConfinedRoots {
 public:
  // No roots: every path is allowed (library callers such as tests and the single-process
  // tools, which read the user's own files). The programs that serve others always
  // configure roots.
  ConfinedRoots() = default;

  // `setting` names the configuration in messages ("--data_root"). `roots` are directories,
  // relative ones against the working directory at the time of this call; they need not
  // exist yet (a root that does not exist contains nothing). INVALID_ARGUMENT naming
  // `setting` for an empty entry.
  static absl::StatusOr<ConfinedRoots> Make(std::string setting, std::vector<std::string> roots);
  // Make from a comma-separated list ("../shared/data,/srv/data").
  static absl::StatusOr<ConfinedRoots> FromList(std::string setting, absl::string_view list);

  bool confined() const { return !roots_.empty(); }
  const std::string& setting() const { return setting_; }
  // The roots as absolute paths (as configured, not resolved), for logs.
  const std::vector<std::string>& roots() const { return roots_; }

  // Resolves `path` as the file system would open it: a relative path against the working
  // directory (so job files keep the meaning they have always had), every symlink and ".."
  // followed. Returns the canonical absolute path if it exists and lies inside one of the
  // roots (each root also canonical, resolved now, so a root that is itself a symlink
  // works). Otherwise INVALID_ARGUMENT "<field> '<path>': not found under <setting>",
  // identical for every reason (NOTE above). Unconfined: the path must still exist; the
  // message is then "<field> '<path>': not found".
  absl::StatusOr<std::string> Resolve(absl::string_view field, const std::string& path) const;

 private:
  std::string setting_;
  std::vector<std::string> roots_;
};

// Reads a whole regular file of at most `max_bytes` bytes. Opens with O_NOFOLLOW, so a
// canonical path from Resolve that someone has since replaced by a symlink is refused
// rather than followed (the remaining window, a directory above it swapped for a symlink,
// needs write access inside the root). `field` prefixes messages: NOT_FOUND for a missing
// file, INVALID_ARGUMENT for a non-regular file or one larger than `max_bytes` (naming
// `limit_name`, e.g. "--max_checkpoint_mb").
absl::StatusOr<std::string> ReadFileBounded(absl::string_view field, const std::string& path,
                                            int64_t max_bytes, absl::string_view limit_name);

// "12.3 MiB", for messages about sizes.
std::string HumanBytes(int64_t bytes);

}  // namespace metatrain::files

#endif  // METATRAIN_COMMON_FILES_CONFINED_PATH_H_
