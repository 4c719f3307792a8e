#ifndef METATRAIN_COMMON_DATA_PNG_DECODER_H_
#define METATRAIN_COMMON_DATA_PNG_DECODER_H_

// PNG decoding with libpng's simplified API (png_image), which expands every bit depth
// and colour type (1-bit gray, palette, 16-bit, alpha) to 8 bits per channel for us.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace metatrain::data {

// An 8-bit image, row-major [C, H, W] (planar, the layout of ImageSet).
struct DecodedImage {
  int64_t channels = 1, height = 0, width = 0;
  std::vector<uint8_t> pixels;
};

// Decodes a PNG held in memory. Gray PNGs (with or without alpha) give 1 channel, colour
// PNGs 3; alpha is composited onto white (PNGs with transparent backgrounds are drawn on
// paper). `name` only labels errors: DATA_LOSS "<name>: not a valid PNG (...)" for
// truncated or corrupt bytes. Thread-safe (no shared state).
absl::StatusOr<DecodedImage> DecodePng(std::string_view bytes, const std::string& name);

// Reads and decodes a PNG file: NOT_FOUND if it cannot be opened, DATA_LOSS if corrupt.
absl::StatusOr<DecodedImage> ReadPngFile(const std::string& path);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_PNG_DECODER_H_
