#ifndef METATRAIN_COMMON_DATA_PNG_ENCODER_H_
#define METATRAIN_COMMON_DATA_PNG_ENCODER_H_

// PNG writing (libpng simplified API): for exporting images and for tests that build
// image folders. Only 8-bit gray and RGB; that is all the loaders produce.

#include <string>

#include "absl/status/status.h"
#include "common/data/png_decoder.h"

namespace metatrain::data {

// Writes `image` (planar [C, H, W], C = 1 or 3) to `path`. INVALID_ARGUMENT for a bad
// shape, INTERNAL when libpng cannot write the file.
absl::Status WritePngFile(const DecodedImage& image, const std::string& path);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_PNG_ENCODER_H_
