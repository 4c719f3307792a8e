#ifndef METATRAIN_COMMON_DATA_IMAGE_FOLDER_H_
#define METATRAIN_COMMON_DATA_IMAGE_FOLDER_H_

// Any folder of `<class>/*.png` as a labelled image set ("train on your own images").

#include <string>
#include <system_error>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/image_dataset.h"

namespace metatrain::data {

struct ImageFolderOptions {
  int image_size = 28;
  // 0: 1 if every image is gray, else 3 (gray images are repeated on 3 channels).
  int channels = 0;
};

// Loads <dir>/<class>/*.png (also .PNG): classes are the sub-folders in byte order of their
// names (hidden ones, starting with '.', are skipped), images within a class in name order.
// Every image is resized to image_size x image_size (Pillow LANCZOS); pixel values are kept
// as stored (no inversion). Other files are ignored. Errors: NOT_FOUND if dir is missing;
// INVALID_ARGUMENT if it has no class folder or a class folder has no PNG; DATA_LOSS naming
// the file for an unreadable PNG.
absl::StatusOr<ImageSet> LoadImageFolder(const std::string& dir, const ImageFolderOptions& options);

// The sub-folders of `dir` not starting with '.', sorted by name; `ec` reports a listing
// error (never throws).
std::vector<std::string> ListSubdirectories(const std::string& dir, std::error_code& ec);

// Converts a 1-channel set to 3 channels (no-op otherwise).
void ExpandToRgb(ImageSet& images);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_IMAGE_FOLDER_H_
