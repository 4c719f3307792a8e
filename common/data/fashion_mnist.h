#ifndef METATRAIN_COMMON_DATA_FASHION_MNIST_H_
#define METATRAIN_COMMON_DATA_FASHION_MNIST_H_

// Fashion-MNIST (Xiao et al. 2017) from its IDX files:
//   <dir>/train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]   (60,000)
//   <dir>/t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]    (10,000)
// Both parts are pooled (70,000 images, 10 classes): a few-shot split is over classes, not
// over the official train/test images. Pixels as stored: 0 = background, 255 = garment.

#include <string>

#include "absl/status/statusor.h"
#include "common/data/image_dataset.h"

namespace metatrain::data {

inline constexpr char kDefaultFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// Loads and pools both parts, resized to image_size x image_size (Pillow LANCZOS when not
// 28). Class names are the official ones ("T-shirt/top", ..., "Ankle boot"). NOT_FOUND
// naming the missing file, DATA_LOSS for bad IDX magic/dimensions, truncated files or
// labels >= 10.
absl::StatusOr<ImageSet> LoadFashionMnist(const std::string& dir, int image_size);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_FASHION_MNIST_H_
