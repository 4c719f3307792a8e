#include "common/data/png_decoder.h"

#include <png.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace metatrain::data {

absl::StatusOr<DecodedImage> DecodePng(std::string_view bytes, const std::string& name) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
    absl::Status status =
        absl::DataLossError(absl::StrCat(name, ": not a valid PNG (", image.message, ")"));
    png_image_free(&image);
    return status;
  }
  // The header's dimensions decide the allocation: refuse absurd ones (a corrupt or hostile
  // file) instead of dying in operator new.
  constexpr uint64_t kMaxPixels = uint64_t{1} << 26;
  if (uint64_t{image.width} * image.height > kMaxPixels) {
    absl::Status status = absl::DataLossError(
        absl::StrCat(name, ": PNG of ", image.width, "x", image.height, " pixels is too large"));
    png_image_free(&image);
    return status;
  }
  const bool color = (image.format & PNG_FORMAT_FLAG_COLOR) != 0;
  image.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  // Gray: only the first component of the background is used.
  png_color background{255, 255, 255};
  DecodedImage out;
  out.channels = color ? 3 : 1;
  out.height = image.height;
  out.width = image.width;
  std::vector<uint8_t> interleaved(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, &background, interleaved.data(), 0, nullptr)) {
    absl::Status status =
        absl::DataLossError(absl::StrCat(name, ": corrupt or truncated PNG (", image.message, ")"));
    png_image_free(&image);
    return status;
  }
  if (image.warning_or_error != 0 && (image.warning_or_error & PNG_IMAGE_ERROR) != 0) {
    return absl::DataLossError(absl::StrCat(name, ": corrupt PNG (", image.message, ")"));
  }
  if (!color) {
    out.pixels = std::move(interleaved);
    return out;
  }
  const int64_t plane = out.height * out.width;
  out.pixels.resize(3 * plane);
  for (int64_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) out.pixels[c * plane + i] = interleaved[3 * i + c];
  }
  return out;
}

absl::StatusOr<DecodedImage> ReadPngFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return DecodePng(buffer.str(), path);
}

}  // namespace metatrain::data
