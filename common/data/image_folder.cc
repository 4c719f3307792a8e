#include "common/data/image_folder.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/data/png_decoder.h"
#include "common/data/resize.h"
#include "common/status/status_macros.h"

namespace metatrain::data {
namespace {

namespace fs = std::filesystem;

bool IsPngFile(const fs::directory_entry& e) {
  std::error_code ec;
  if (!e.is_regular_file(ec)) return false;
  const std::string ext = e.path().extension().string();
  return ext == ".png" || ext == ".PNG";
}

}  // namespace

std::vector<std::string> ListSubdirectories(const std::string& dir, std::error_code& ec) {
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (it->is_directory(type_ec) && !name.empty() && name[0] != '.') names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<ImageSet> LoadImageFolder(const std::string& dir,
                                         const ImageFolderOptions& options) {
  if (options.image_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tasks.image_size must be > 0 (got ", options.image_size, ")"));
  }
  if (options.channels != 0 && options.channels != 1 && options.channels != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("image folder channels must be 0, 1 or 3 (got ", options.channels, ")"));
  }
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("tasks.data_dir: ", dir, " is not a directory"));
  }
  std::vector<std::string> classes = ListSubdirectories(dir, ec);
  if (ec) return absl::DataLossError(absl::StrCat(dir, ": cannot list (", ec.message(), ")"));
  if (classes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": no class folders (expected <class>/*.png)"));
  }
  std::vector<DecodedImage> decoded;
  ImageSet images;
  images.height = images.width = options.image_size;
  bool all_gray = true;
  for (size_t c = 0; c < classes.size(); ++c) {
    const fs::path class_dir = fs::path(dir) / classes[c];
    std::vector<std::string> files;
    // Explicit increment(ec): range-for would throw on a listing error.
    for (fs::directory_iterator it(class_dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (IsPngFile(*it)) files.push_back(it->path().string());
    }
    if (ec) {
      return absl::DataLossError(
          absl::StrCat(class_dir.string(), ": cannot list (", ec.message(), ")"));
    }
    if (files.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(class_dir.string(), ": no PNG images"));
    }
    std::sort(files.begin(), files.end());
    for (const std::string& file : files) {
      ASSIGN_OR_RETURN(DecodedImage image, ReadPngFile(file));
      all_gray = all_gray && image.channels == 1;
      decoded.push_back(ResizeLanczos(image, options.image_size, options.image_size));
      images.labels.push_back(static_cast<int32_t>(c));
    }
    images.class_names.push_back(classes[c]);
  }
  images.channels = options.channels != 0 ? options.channels : (all_gray ? 1 : 3);
  images.pixels.reserve(decoded.size() * images.image_bytes());
  for (DecodedImage& image : decoded) {
    if (image.channels == 1 && images.channels == 3) image = GrayToRgb(image);
    if (image.channels == 3 && images.channels == 1) {
      // Requested gray from colour: ITU-R 601 luma, as Pillow's convert('L').
      const int64_t plane = image.height * image.width;
      std::vector<uint8_t> gray(plane);
      for (int64_t i = 0; i < plane; ++i) {
        gray[i] = static_cast<uint8_t>((image.pixels[i] * 299 + image.pixels[plane + i] * 587 +
                                        image.pixels[2 * plane + i] * 114 + 500) /
                                       1000);
      }
      image.pixels = std::move(gray);
      image.channels = 1;
    }
    images.pixels.insert(images.pixels.end(), image.pixels.begin(), image.pixels.end());
  }
  return images;
}

void ExpandToRgb(ImageSet& images) {
  if (images.channels != 1) return;
  const int64_t plane = images.height * images.width;
  std::vector<uint8_t> rgb(images.pixels.size() * 3);
  for (int64_t i = 0; i < images.size(); ++i) {
    for (int c = 0; c < 3; ++c) {
      std::copy_n(images.pixels.begin() + i * plane, plane, rgb.begin() + (3 * i + c) * plane);
    }
  }
  images.pixels = std::move(rgb);
  images.channels = 3;
}

}  // namespace metatrain::data
