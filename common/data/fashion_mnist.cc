#include "common/data/fashion_mnist.h"

#include <zlib.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/data/resize.h"
#include "common/status/status_macros.h"

namespace metatrain::data {
namespace {

constexpr const char* kClassNames[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

// The whole decompressed file. gzread also reads uncompressed files as they are.
absl::StatusOr<std::string> ReadMaybeGz(const std::string& dir, const std::string& stem) {
  std::string path = absl::StrCat(dir, "/", stem, ".gz");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) path = absl::StrCat(dir, "/", stem);
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("tasks.data_dir: no Fashion-MNIST file ", stem,
                                            "[.gz] in ", dir, " (see docs/data.md)"));
  }
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string out;
  char buffer[1 << 16];
  int n;
  while ((n = gzread(f, buffer, sizeof(buffer))) > 0) out.append(buffer, n);
  int err = Z_OK;
  const std::string message = n < 0 ? gzerror(f, &err) : "";
  gzclose(f);
  if (n < 0) return absl::DataLossError(absl::StrCat(path, ": corrupt gzip (", message, ")"));
  return out;
}

uint32_t BigEndian32(const std::string& b, size_t at) {
  return (uint32_t{static_cast<uint8_t>(b[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(b[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(b[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(b[at + 3])};
}

absl::Status AppendPart(const std::string& dir, const std::string& prefix, int image_size,
                        ImageSet& images) {
  const std::string image_stem = prefix + "-images-idx3-ubyte";
  const std::string label_stem = prefix + "-labels-idx1-ubyte";
  ASSIGN_OR_RETURN(std::string pixels, ReadMaybeGz(dir, image_stem));
  ASSIGN_OR_RETURN(std::string labels, ReadMaybeGz(dir, label_stem));
  if (pixels.size() < 16 || BigEndian32(pixels, 0) != 0x803) {
    return absl::DataLossError(
        absl::StrCat(dir, "/", image_stem, ": not an IDX3 unsigned-byte file (bad magic)"));
  }
  if (labels.size() < 8 || BigEndian32(labels, 0) != 0x801) {
    return absl::DataLossError(
        absl::StrCat(dir, "/", label_stem, ": not an IDX1 unsigned-byte file (bad magic)"));
  }
  const uint64_t n = BigEndian32(pixels, 4), rows = BigEndian32(pixels, 8),
                 cols = BigEndian32(pixels, 12);
  if (rows != 28 || cols != 28) {
    return absl::DataLossError(
        absl::StrCat(dir, "/", image_stem, ": images are ", rows, "x", cols, ", expected 28x28"));
  }
  if (pixels.size() != 16 + n * rows * cols) {
    return absl::DataLossError(absl::StrCat(dir, "/", image_stem, ": ", pixels.size(),
                                            " bytes for ", n, " images (truncated?)"));
  }
  if (BigEndian32(labels, 4) != n || labels.size() != 8 + n) {
    return absl::DataLossError(
        absl::StrCat(dir, "/", label_stem, ": ", labels.size() - 8, " labels for ", n, " images"));
  }
  DecodedImage one;
  one.height = rows;
  one.width = cols;
  for (uint64_t i = 0; i < n; ++i) {
    const uint8_t label = static_cast<uint8_t>(labels[8 + i]);
    if (label >= 10) {
      return absl::DataLossError(
          absl::StrCat(dir, "/", label_stem, ": label ", int{label}, " at index ", i, " >= 10"));
    }
    images.labels.push_back(label);
    const uint8_t* p = reinterpret_cast<const uint8_t*>(pixels.data()) + 16 + i * rows * cols;
    if (image_size == 28) {
      images.pixels.insert(images.pixels.end(), p, p + rows * cols);
    } else {
      one.pixels.assign(p, p + rows * cols);
      const DecodedImage resized = ResizeLanczos(one, image_size, image_size);
      images.pixels.insert(images.pixels.end(), resized.pixels.begin(), resized.pixels.end());
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ImageSet> LoadFashionMnist(const std::string& dir, int image_size) {
  if (image_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tasks.image_size must be > 0 (got ", image_size, ")"));
  }
  ImageSet images;
  images.channels = 1;
  images.height = images.width = image_size;
  images.class_names.assign(std::begin(kClassNames), std::end(kClassNames));
  RETURN_IF_ERROR(AppendPart(dir, "train", image_size, images));
  RETURN_IF_ERROR(AppendPart(dir, "t10k", image_size, images));
  return images;
}

}  // namespace metatrain::data
