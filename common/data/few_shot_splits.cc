#include "common/data/few_shot_splits.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/data/omniglot.h"
#include "common/meta/rng.h"

namespace metatrain::data {
namespace {

// Fixed split seeds (never the job seed, see the header).
constexpr uint64_t kOmniglotMamlSeed = 1;
constexpr uint64_t kOmniglotAlphabetSeed = 2;
constexpr uint64_t kFolderSeed = 3;

std::vector<ClassRef> Refs(std::vector<int64_t> classes, bool rotations) {
  std::sort(classes.begin(), classes.end());
  std::vector<ClassRef> refs;
  for (int64_t c : classes) {
    for (int q = 0; q < (rotations ? 4 : 1); ++q)
      refs.push_back(ClassRef{static_cast<int32_t>(c), q});
  }
  return refs;
}

}  // namespace

absl::StatusOr<ClassSplit> SplitOmniglotMaml(const ImageSet& omniglot, bool rotations) {
  const int64_t n = omniglot.class_names.size();
  const int64_t trainval = kOmniglotMamlTrainCharacters + kOmniglotMamlValidationCharacters;
  if (n <= trainval) {
    return absl::FailedPreconditionError(
        absl::StrCat("tasks.split: \"maml\" needs more than ", trainval, " classes (got ", n, ")"));
  }
  meta::Rng rng(kOmniglotMamlSeed);
  const std::vector<int64_t> order = rng.SampleWithoutReplacement(n, n);
  ClassSplit split;
  split.train = Refs({order.begin(), order.begin() + kOmniglotMamlTrainCharacters}, rotations);
  split.validation =
      Refs({order.begin() + kOmniglotMamlTrainCharacters, order.begin() + trainval}, false);
  split.test = Refs({order.begin() + trainval, order.end()}, false);
  split.description = absl::StrCat(
      "omniglot split \"maml\": ", n, " characters shuffled with fixed seed ", kOmniglotMamlSeed,
      "; meta-train ", kOmniglotMamlTrainCharacters, " characters",
      rotations ? " x 4 rotations (0/90/180/270) = " : " (no rotations) = ", split.train.size(),
      " classes; meta-validation ", kOmniglotMamlValidationCharacters, " characters; meta-test ",
      n - trainval, " characters");
  return split;
}

absl::StatusOr<ClassSplit> SplitOmniglotBackgroundEvaluation(const ImageSet& omniglot,
                                                             bool rotations) {
  std::map<std::string, std::vector<int64_t>> background;  // alphabet -> classes
  std::vector<int64_t> test;
  std::set<std::string> test_alphabets;
  for (int64_t c = 0; c < static_cast<int64_t>(omniglot.class_names.size()); ++c) {
    const std::string& name = omniglot.class_names[c];
    if (IsOmniglotBackground(name)) {
      background[OmniglotAlphabet(name)].push_back(c);
    } else if (name.rfind("images_evaluation/", 0) == 0) {
      test.push_back(c);
      test_alphabets.insert(OmniglotAlphabet(name));
    } else {
      return absl::FailedPreconditionError(
          absl::StrCat("tasks.split: \"background_evaluation\" needs Omniglot class names (got \"",
                       name, "\")"));
    }
  }
  const int64_t alphabets = background.size();
  if (alphabets <= kOmniglotBackgroundValidationAlphabets || test.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("tasks.split: \"background_evaluation\" needs more than ",
                     kOmniglotBackgroundValidationAlphabets,
                     " background alphabets and some evaluation ones (got ", alphabets, " and ",
                     test_alphabets.size(), ")"));
  }
  std::vector<std::string> names;
  for (const auto& [name, classes] : background) names.push_back(name);
  meta::Rng rng(kOmniglotAlphabetSeed);
  std::vector<int64_t> picked =
      rng.SampleWithoutReplacement(alphabets, kOmniglotBackgroundValidationAlphabets);
  std::sort(picked.begin(), picked.end());
  std::vector<int64_t> train, validation;
  std::vector<std::string> validation_names;
  for (int64_t a = 0; a < alphabets; ++a) {
    const std::vector<int64_t>& classes = background[names[a]];
    if (std::binary_search(picked.begin(), picked.end(), a)) {
      validation.insert(validation.end(), classes.begin(), classes.end());
      validation_names.push_back(names[a].substr(names[a].find('/') + 1));
    } else {
      train.insert(train.end(), classes.begin(), classes.end());
    }
  }
  ClassSplit split;
  split.train = Refs(train, rotations);
  split.validation = Refs(validation, false);
  split.test = Refs(test, false);
  split.description = absl::StrCat(
      "omniglot split \"background_evaluation\": meta-train ", alphabets - picked.size(),
      " background alphabets, ", train.size(), " characters",
      rotations ? " x 4 rotations = " : " (no rotations) = ", split.train.size(),
      " classes; meta-validation ", picked.size(), " background alphabets (",
      absl::StrJoin(validation_names, ", "), "), ", validation.size(), " characters; meta-test ",
      test_alphabets.size(), " evaluation alphabets, ", test.size(), " characters");
  return split;
}

ClassSplit SplitFashionMnist(const ImageSet& fashion_mnist) {
  ClassSplit split;
  split.train = Refs({0, 1, 2, 3, 4}, false);
  split.test = Refs({5, 6, 7, 8, 9}, false);
  std::vector<std::string> train_names, test_names;
  for (const ClassRef& r : split.train) train_names.push_back(fashion_mnist.class_names[r.base]);
  for (const ClassRef& r : split.test) test_names.push_back(fashion_mnist.class_names[r.base]);
  split.description =
      absl::StrCat("fashion_mnist: train+t10k pooled (", fashion_mnist.size(),
                   " images); meta-train classes 0-4 (", absl::StrJoin(train_names, ", "),
                   "); meta-test classes 5-9 (", absl::StrJoin(test_names, ", "),
                   "); no meta-validation classes");
  return split;
}

absl::StatusOr<ClassSplit> SplitClassesByFraction(const ImageSet& images, int min_ways) {
  const int64_t n = images.class_names.size();
  min_ways = std::max(min_ways, 1);
  const int64_t fraction = std::llround(0.15 * n);
  const int64_t n_test = std::max<int64_t>(fraction, min_ways);
  const int64_t n_val = std::max<int64_t>(fraction, min_ways);
  const int64_t n_train = n - n_test - n_val;
  if (n_train < min_ways) {
    return absl::InvalidArgumentError(
        absl::StrCat("tasks.data_dir: ", n, " classes cannot make class-disjoint ", min_ways,
                     "-way train/validation/test splits (need at least ", 3 * min_ways, ")"));
  }
  meta::Rng rng(kFolderSeed);
  const std::vector<int64_t> order = rng.SampleWithoutReplacement(n, n);
  ClassSplit split;
  split.test = Refs({order.begin(), order.begin() + n_test}, false);
  split.validation = Refs({order.begin() + n_test, order.begin() + n_test + n_val}, false);
  split.train = Refs({order.begin() + n_test + n_val, order.end()}, false);
  auto names = [&](const std::vector<ClassRef>& refs) {
    std::vector<std::string> out;
    for (const ClassRef& r : refs) out.push_back(images.class_names[r.base]);
    return absl::StrJoin(out, ", ");
  };
  split.description =
      absl::StrCat("image_folder: ", n, " classes, fixed-seed shuffle, 15% (>= ", min_ways,
                   ") test, 15% (>= ", min_ways, ") validation, rest train; meta-train ", n_train,
                   " classes; meta-validation ", n_val, " (", names(split.validation),
                   "); meta-test ", n_test, " (", names(split.test), ")");
  return split;
}

}  // namespace metatrain::data
