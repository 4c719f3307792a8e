#ifndef METATRAIN_COMMON_DATA_RESIZE_H_
#define METATRAIN_COMMON_DATA_RESIZE_H_

// Image resampling. NOTE [Lanczos as in Pillow]: the few-shot literature resizes
// Omniglot 105x105 -> 28x28 with PIL's LANCZOS filter (learn2learn / torchvision:
// Image.convert('L') then Resize(28, LANCZOS)). We reimplement Pillow's separable
// resampler bit for bit (Lanczos-3 kernel widened by the scale factor when shrinking, so it
// antialiases; 22-bit fixed-point coefficients; horizontal pass into an 8-bit buffer, then
// vertical), so a model trained here sees the same pixels as one trained on
// PIL-resized images. (cbfinn/maml's resize script called resize(LANCZOS) on mode-'1'
// images, which Pillow silently turns into NEAREST; we do not reproduce that artefact.)

#include <cstdint>
#include <vector>

#include "common/data/png_decoder.h"

namespace metatrain::data {

// Resizes a planar [C, H, W] 8-bit image to out_height x out_width with Pillow's
// LANCZOS. Sizes must be positive. Pure function, thread-safe.
DecodedImage ResizeLanczos(const DecodedImage& image, int64_t out_height, int64_t out_width);

// Expands a 1-channel image to 3 identical channels (for folders mixing gray and colour).
DecodedImage GrayToRgb(const DecodedImage& image);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_RESIZE_H_
