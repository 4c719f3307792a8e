#include "common/data/episodes.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/data/image_folder.h"
#include "common/status/status_macros.h"

namespace metatrain::data {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<ImageSet> LoadPart(const fs::path& episode, const char* part, int image_size) {
  const fs::path dir = episode / part;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("episode ", episode.string(), ": no ", part,
                                                   "/ folder (expected ", part, "/<class>/*.png)"));
  }
  ImageFolderOptions options;
  options.image_size = image_size;
  return LoadImageFolder(dir.string(), options);
}

}  // namespace

absl::StatusOr<EpisodeSet> LoadEpisodes(const std::string& dir, int image_size) {
  if (image_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("image size must be > 0 (got ", image_size, ")"));
  }
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("episodes: ", dir, " is not a directory"));
  }
  const std::vector<std::string> names = ListSubdirectories(dir, ec);
  if (ec) return absl::DataLossError(absl::StrCat(dir, ": cannot list (", ec.message(), ")"));
  if (names.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "episodes: ", dir, " has no episode folders (expected <episode>/support/<class>/*.png)"));
  }
  EpisodeSet set;
  set.image_size = image_size;
  bool any_color = false;
  for (const std::string& name : names) {
    const fs::path episode = fs::path(dir) / name;
    Episode e;
    e.name = name;
    ASSIGN_OR_RETURN(e.support, LoadPart(episode, "support", image_size));
    ASSIGN_OR_RETURN(ImageSet query, LoadPart(episode, "query", image_size));
    // Relabel the query by the support's class order.
    for (int32_t& label : query.labels) {
      const std::string& cls = query.class_names[label];
      const auto it = std::find(e.support.class_names.begin(), e.support.class_names.end(), cls);
      if (it == e.support.class_names.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "episode ", episode.string(), ": query class '", cls, "' has no support examples"));
      }
      label = static_cast<int32_t>(it - e.support.class_names.begin());
    }
    query.class_names = e.support.class_names;
    e.query = std::move(query);
    any_color = any_color || e.support.channels == 3 || e.query.channels == 3;
    set.episodes.push_back(std::move(e));
  }
  set.channels = any_color ? 3 : 1;
  if (any_color) {
    for (Episode& e : set.episodes) {
      ExpandToRgb(e.support);
      ExpandToRgb(e.query);
    }
  }
  return set;
}

}  // namespace metatrain::data
