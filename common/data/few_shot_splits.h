#ifndef METATRAIN_COMMON_DATA_FEW_SHOT_SPLITS_H_
#define METATRAIN_COMMON_DATA_FEW_SHOT_SPLITS_H_

// Class-disjoint train / validation / test splits for few-shot learning. Every split is a
// fixed function of the class list (fixed seeds, as the literature's random.seed(1)): all
// jobs on the same data meta-test on the same classes, so their numbers compare.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/image_dataset.h"

namespace metatrain::data {

struct ClassSplit {
  std::vector<ClassRef> train, validation, test;
  std::string description;
};

inline constexpr int kOmniglotMamlTrainCharacters = 1100;
inline constexpr int kOmniglotMamlValidationCharacters = 100;
inline constexpr int kOmniglotBackgroundValidationAlphabets = 5;

// cbfinn/maml's protocol: the characters (in class-name order) are shuffled with a fixed
// seed; the first 1100 are meta-training, the next 100 meta-validation (together MAML's
// "1200 training characters"), the remaining 423 meta-test. With `rotations`, every
// training character also appears rotated by 90/180/270 degrees as 3 extra classes (4400
// training classes); validation and test classes are not rotated. FAILED_PRECONDITION if
// there are not more than 1200 classes.
absl::StatusOr<ClassSplit> SplitOmniglotMaml(const ImageSet& omniglot, bool rotations);

// Lake's protocol: meta-test on the 20 evaluation alphabets (659 characters); 5 of the 30
// background alphabets, chosen with a fixed seed, are meta-validation; the other 25 train
// (rotated copies as for "maml" when `rotations`). FAILED_PRECONDITION if the class names
// are not Omniglot's ("images_background/<Alphabet>/<character>").
absl::StatusOr<ClassSplit> SplitOmniglotBackgroundEvaluation(const ImageSet& omniglot,
                                                             bool rotations);

// Fashion-MNIST's 10 classes: train on 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat),
// meta-test on 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), so 5-way testing works; no
// validation classes are left (10 classes cannot give three disjoint 5-way sets).
ClassSplit SplitFashionMnist(const ImageSet& fashion_mnist);

// Any class list: a fixed-seed permutation of the classes; 15% (at least `min_ways`) go to
// test, 15% (at least `min_ways`) to validation, the rest (at least `min_ways`) train.
// INVALID_ARGUMENT naming the counts when there are too few classes.
absl::StatusOr<ClassSplit> SplitClassesByFraction(const ImageSet& images, int min_ways);

}  // namespace metatrain::data

#endif  // METATRAIN_COMMON_DATA_FEW_SHOT_SPLITS_H_
