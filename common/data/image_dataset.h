#ifndef METATRAIN_COMMON_DATA_IMAGE_DATASET_H_
#define METATRAIN_COMMON_DATA_IMAGE_DATASET_H_

// Labelled image sets for few-shot classification, held in memory as bytes. Loaders for
// real datasets (Omniglot, Fashion-MNIST, folders of PNGs) fill these; the meta-learning
// core turns them into tasks. No LibTorch here.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::data {

// N images of one size, row-major [N, C, H, W]; 255 = ink / foreground for Omniglot.

struct ImageSet {
  int64_t channels = 1, height = 0, width = 0;
  std::vector<uint8_t> pixels;       // N * C * H * W
  std::vector<int32_t> labels;       // N, in [0, class_names.size())
  std::vector<std::string> class_names;
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t image_bytes() const { return channels * height * width; }
};

// A class of a few-shot split: a class of the image set, optionally rotated by
// `quarter_turns` x 90 degrees counter-clockwise (the MAML Omniglot protocol's extra classes).
struct ClassRef {
  int32_t base = 0;
  int32_t quarter_turns = 0;
  bool operator==(const ClassRef& o) const {
    return base == o.base && quarter_turns == o.quarter_turns;
  }
};

struct FewShotDataset {
  ImageSet images;
  // Indices into images, per base class.
  std::vector<std::vector<int64_t>> examples_by_class;
  std::vector<ClassRef> train_classes, validation_classes, test_classes;
  // Human-readable description of the split, written into results.
  std::string split_description;
};

// Groups image indices by label.
std::vector<std::vector<int64_t>> GroupByClass(const ImageSet& images);

// Loads the dataset that spec.family() names ("omniglot", "fashion_mnist", "image_folder")
// from spec.data_dir() and splits its classes as the spec says. Clear INVALID_ARGUMENT /
// NOT_FOUND / DATA_LOSS errors for missing, partial or corrupt data.
absl::StatusOr<FewShotDataset> LoadFewShotDataset(const v1::TaskSpec& spec, uint64_t seed);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_IMAGE_DATASET_H_
