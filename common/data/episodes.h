#ifndef METATRAIN_COMMON_DATA_EPISODES_H_
#define METATRAIN_COMMON_DATA_EPISODES_H_

// Bring-your-own evaluation episodes, laid out as folders:
//   <dir>/<episode>/support/<class>/*.png
//   <dir>/<episode>/query/<class>/*.png
// (see docs/data.md). Each episode is adapted to on its support set and scored on its query.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/image_dataset.h"

namespace metatrain::data {

struct Episode {
  std::string name;
  // Labels index support.class_names (the episode's classes in byte order of their names);
  // query uses the same class_names and labels, so label k means the same class in both.
  ImageSet support, query;
};

struct EpisodeSet {
  std::vector<Episode> episodes;  // in byte order of the episode folder names
  int64_t channels = 1;           // 1 if every image of every episode is gray, else 3
  int64_t image_size = 28;
};

// Loads every episode, images resized to image_size (Pillow LANCZOS), values as stored.
// NOT_FOUND if dir is missing; INVALID_ARGUMENT naming the episode when it has no
// support/ or query/ folder, no episodes at all, or a query class absent from its support;
// DATA_LOSS naming the file for an unreadable PNG.
absl::StatusOr<EpisodeSet> LoadEpisodes(const std::string& dir, int image_size);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_EPISODES_H_
