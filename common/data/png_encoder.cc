#include "common/data/png_encoder.h"

#include <png.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace metatrain::data {

absl::Status WritePngFile(const DecodedImage& image, const std::string& path) {
  if ((image.channels != 1 && image.channels != 3) || image.height <= 0 || image.width <= 0 ||
      static_cast<int64_t>(image.pixels.size()) != image.channels * image.height * image.width) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot write a ", image.channels, "x",
                                                   image.height, "x", image.width, " image with ",
                                                   image.pixels.size(), " bytes"));
  }
  const int64_t plane = image.height * image.width;
  std::vector<uint8_t> interleaved(image.pixels.size());
  for (int64_t i = 0; i < plane; ++i) {
    for (int64_t c = 0; c < image.channels; ++c) {
      interleaved[image.channels * i + c] = image.pixels[c * plane + i];
    }
  }
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = image.width;
  png.height = image.height;
  png.format = image.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  if (!png_image_write_to_file(&png, path.c_str(), 0, interleaved.data(), 0, nullptr)) {
    absl::Status status =
        absl::InternalError(absl::StrCat(path, ": cannot write PNG (", png.message, ")"));
    png_image_free(&png);
    return status;
  }
  return absl::OkStatus();
}

}  // namespace metatrain::data
