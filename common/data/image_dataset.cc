#include "common/data/image_dataset.h"

#include "absl/strings/str_cat.h"
#include "common/data/fashion_mnist.h"
#include "common/data/few_shot_splits.h"
#include "common/data/image_folder.h"
#include "common/data/omniglot.h"
#include "common/status/status_macros.h"

namespace metatrain::data {
namespace {

constexpr int kDefaultImageSize = 28;
constexpr int kMaxImageSize = 1024;
constexpr int kDefaultWays = 5;

FewShotDataset Assemble(ImageSet images, ClassSplit split) {
  FewShotDataset dataset;
  dataset.examples_by_class = GroupByClass(images);
  dataset.images = std::move(images);
  dataset.train_classes = std::move(split.train);
  dataset.validation_classes = std::move(split.validation);
  dataset.test_classes = std::move(split.test);
  dataset.split_description = std::move(split.description);
  return dataset;
}

}  // namespace

std::vector<std::vector<int64_t>> GroupByClass(const ImageSet& images) {
  std::vector<std::vector<int64_t>> groups(images.class_names.size());
  for (int64_t i = 0; i < images.size(); ++i) groups[images.labels[i]].push_back(i);
  return groups;
}

absl::StatusOr<FewShotDataset> LoadFewShotDataset(const v1::TaskSpec& spec, uint64_t /*seed*/) {
  const int image_size = spec.image_size() == 0 ? kDefaultImageSize : spec.image_size();
  if (image_size < 1 || image_size > kMaxImageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tasks.image_size must be in [1, ", kMaxImageSize, "] (got ", spec.image_size(), ")"));
  }
  const std::string& family = spec.family();
  if (family == "omniglot") {
    const std::string split = spec.split().empty() ? "maml" : spec.split();
    if (split != "maml" && split != "background_evaluation") {
      return absl::InvalidArgumentError(absl::StrCat(
          "tasks.split must be \"maml\" or \"background_evaluation\" for omniglot (got \"", split,
          "\")"));
    }
    OmniglotOptions options;
    options.image_size = image_size;
    ASSIGN_OR_RETURN(ImageSet images, LoadOmniglot(spec.data_dir(), options));
    const bool rotations = !spec.no_rotations();
    ASSIGN_OR_RETURN(ClassSplit classes,
                     split == "maml" ? SplitOmniglotMaml(images, rotations)
                                     : SplitOmniglotBackgroundEvaluation(images, rotations));
    return Assemble(std::move(images), std::move(classes));
  }
  if (!spec.split().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("tasks.split is only for omniglot (got \"",
                                                   spec.split(), "\" for ", family, ")"));
  }
  if (family == "fashion_mnist") {
    const std::string dir = spec.data_dir().empty() ? kDefaultFashionMnistDir : spec.data_dir();
    ASSIGN_OR_RETURN(ImageSet images, LoadFashionMnist(dir, image_size));
    ClassSplit classes = SplitFashionMnist(images);
    return Assemble(std::move(images), std::move(classes));
  }
  if (family == "image_folder") {
    if (spec.data_dir().empty()) {
      return absl::InvalidArgumentError("tasks.data_dir is required for image_folder");
    }
    ImageFolderOptions options;
    options.image_size = image_size;
    ASSIGN_OR_RETURN(ImageSet images, LoadImageFolder(spec.data_dir(), options));
    ASSIGN_OR_RETURN(ClassSplit classes,
                     SplitClassesByFraction(images, spec.ways() > 0 ? spec.ways() : kDefaultWays));
    return Assemble(std::move(images), std::move(classes));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tasks.family \"", family,
                   "\" has no image dataset (expected omniglot, fashion_mnist or image_folder)"));
}

}  // namespace metatrain::data
