#ifndef METATRAIN_COMMON_DATA_IMAGE_DATASET_H_
#define METATRAIN_COMMON_DATA_IMAGE_DATASET_H_

// Labelled image sets for few-shot classification, held in memory as bytes. Loaders for
// real datasets (omniglot.h, fashion_mnist.h, image_folder.h; episodes.h for
// bring-your-own evaluation episodes) fill these, few_shot_splits.h splits their classes;
// the meta-learning core turns them into tasks. No LibTorch here. Layouts, conventions and
// the decode cache: docs/data.md.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::data {

// N images of one size, row-major [N, C, H, W], 8 bits per value. Omniglot: 255 = ink,
// 0 = paper (inverted from the PNGs, as MAML and learn2learn do); Fashion-MNIST: as stored
// (0 = background); image folders: as stored.

struct ImageSet {
  int64_t channels = 1, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // N * C * H * W
  std::vector<int32_t> labels;  // N, in [0, class_names.size())
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
// from spec.data_dir() (fashion_mnist: default /usr/share/datasets/fashion-mnist), resized
// to spec.image_size() (default 28), and splits its classes: omniglot by spec.split()
// ("maml" default, or "background_evaluation"; rotated training classes unless
// spec.no_rotations()), the others by the fixed rules of few_shot_splits.h (image_folder:
// each split has at least spec.ways() classes, default 5). Train, validation and test
// classes never share a base class.
//
// `seed` does not change the split: the built-in splits use fixed seeds so that every job on
// the same data meta-tests on the same classes (as the literature does with random.seed(1)).
// It is kept for splits that will vary with the job.
//
// Errors: INVALID_ARGUMENT for an unknown family, a bad split or image size (the message
// names the tasks.* field); NOT_FOUND "tasks.data_dir: no Omniglot found in ..." and
// similar for missing data; DATA_LOSS naming the file for partial or corrupt data.
// Omniglot's decoded images are cached on disk (dataset_cache.h), so only the first load
// pays for decoding. Thread-safe.
absl::StatusOr<FewShotDataset> LoadFewShotDataset(const v1::TaskSpec& spec, uint64_t seed);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_IMAGE_DATASET_H_
