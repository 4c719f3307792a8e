// A procedural few-shot image dataset: learnable, not trivial, needs no files.

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/meta/rng.h"
#include "common/meta/task_family_impl.h"

namespace metatrain::meta {
namespace {

constexpr int kTrainClasses = 64, kValidationClasses = 16, kTestClasses = 20;
constexpr int kExamplesPerClass = 20;

// A class prototype: a few Gaussian blobs and line strokes on a side x side canvas, in [0, 1].
std::vector<double> Prototype(Rng& rng, int side) {
  std::vector<double> canvas(side * side, 0.0);
  const int blobs = 2 + static_cast<int>(rng.UniformInt(3));
  for (int b = 0; b < blobs; ++b) {
    const double cy = rng.Uniform(0.2, 0.8) * side, cx = rng.Uniform(0.2, 0.8) * side;
    const double sigma = rng.Uniform(0.05, 0.12) * side;
    for (int y = 0; y < side; ++y) {
      for (int x = 0; x < side; ++x) {
        const double d2 = (y - cy) * (y - cy) + (x - cx) * (x - cx);
        canvas[y * side + x] += std::exp(-d2 / (2 * sigma * sigma));
      }
    }
  }
  const int strokes = 1 + static_cast<int>(rng.UniformInt(2));
  for (int s = 0; s < strokes; ++s) {
    double y0 = rng.Uniform(0.1, 0.9) * side, x0 = rng.Uniform(0.1, 0.9) * side;
    double y1 = rng.Uniform(0.1, 0.9) * side, x1 = rng.Uniform(0.1, 0.9) * side;
    for (int k = 0; k <= 2 * side; ++k) {
      const double f = k / (2.0 * side);
      const int y = static_cast<int>(y0 + f * (y1 - y0)), x = static_cast<int>(x0 + f * (x1 - x0));
      if (y >= 0 && y < side && x >= 0 && x < side) canvas[y * side + x] += 1.0;
    }
  }
  for (auto& v : canvas) v = std::min(v, 1.0);
  return canvas;
}

}  // namespace

data::FewShotDataset MakeSyntheticImageDataset(const v1::TaskSpec& spec, uint64_t seed) {
  const int side = spec.image_size() > 0 ? spec.image_size() : 28;
  const int num_classes = kTrainClasses + kValidationClasses + kTestClasses;
  data::FewShotDataset d;
  auto& im = d.images;
  im.channels = 1;
  im.height = side;
  im.width = side;
  im.pixels.reserve(static_cast<size_t>(num_classes) * kExamplesPerClass * side * side);
  for (int c = 0; c < num_classes; ++c) {
    im.class_names.push_back(absl::StrCat("synthetic_", c));
    Rng class_rng(MixSeed({seed, 0x73796e7468ull /* "synth" */, static_cast<uint64_t>(c)}));
    const std::vector<double> proto = Prototype(class_rng, side);
    for (int e = 0; e < kExamplesPerClass; ++e) {
      // Per example: a shift of up to 3 pixels, a contrast change and pixel noise.
      const int dy = static_cast<int>(class_rng.UniformInt(7)) - 3;
      const int dx = static_cast<int>(class_rng.UniformInt(7)) - 3;
      const double contrast = class_rng.Uniform(0.6, 1.0);
      for (int y = 0; y < side; ++y) {
        for (int x = 0; x < side; ++x) {
          const int sy = y - dy, sx = x - dx;
          double v = (sy >= 0 && sy < side && sx >= 0 && sx < side) ? proto[sy * side + sx] : 0;
          v = contrast * v + 0.25 * class_rng.Normal();
          im.pixels.push_back(static_cast<uint8_t>(std::clamp(v, 0.0, 1.0) * 255.0 + 0.5));
        }
      }
      im.labels.push_back(c);
    }
  }
  d.examples_by_class = data::GroupByClass(im);
  for (int c = 0; c < num_classes; ++c) {
    data::ClassRef ref{c, 0};
    if (c < kTrainClasses) {
      d.train_classes.push_back(ref);
    } else if (c < kTrainClasses + kValidationClasses) {
      d.validation_classes.push_back(ref);
    } else {
      d.test_classes.push_back(ref);
    }
  }
  d.split_description = absl::StrCat("synthetic images: ", kTrainClasses, " train / ",
                                     kValidationClasses, " validation / ", kTestClasses,
                                     " test classes, ", kExamplesPerClass, " examples each");
  return d;
}

}  // namespace metatrain::meta
