// Fashion-MNIST from the system copy (/usr/share/datasets/fashion-mnist).

#include "common/data/fashion_mnist.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/data/image_dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/data/data_test_util.h"

namespace metatrain::data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ScratchDir;

::testing::AssertionResult HaveFashionMnist() {
  if (fs::exists(std::string(kDefaultFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "Fashion-MNIST missing from " << kDefaultFashionMnistDir << " (see docs/data.md)";
}

TEST(FashionMnistTest, CountsLabelsAndPixels) {
  ASSERT_TRUE(HaveFashionMnist());
  absl::StatusOr<ImageSet> images = LoadFashionMnist(kDefaultFashionMnistDir, 28);
  ASSERT_OK(images.status());
  ASSERT_EQ(images->size(), 70000);
  EXPECT_EQ(images->pixels.size(), 70000u * 28 * 28);
  ASSERT_EQ(images->class_names.size(), 10u);
  EXPECT_EQ(images->class_names[0], "T-shirt/top");
  EXPECT_EQ(images->class_names[9], "Ankle boot");
  // Both official parts are balanced: 7,000 per class.
  for (const auto& group : GroupByClass(*images)) EXPECT_EQ(group.size(), 7000u);
  // Known first labels of the official training file: Ankle boot, T-shirt/top, T-shirt/top, Dress.
  EXPECT_EQ(images->labels[0], 9);
  EXPECT_EQ(images->labels[1], 0);
  EXPECT_EQ(images->labels[2], 0);
  EXPECT_EQ(images->labels[3], 3);
  // Dark background, bright garment; corners are background.
  double mean = 0;
  for (uint8_t v : images->pixels) mean += v;
  mean /= images->pixels.size() * 255.0;
  EXPECT_GT(mean, 0.2);
  EXPECT_LT(mean, 0.45);
}

TEST(FashionMnistTest, FewShotSplitIsClassDisjointAndAllowsFiveWayTests) {
  ASSERT_TRUE(HaveFashionMnist());
  v1::TaskSpec spec;
  spec.set_family("fashion_mnist");
  spec.set_image_size(14);
  absl::StatusOr<FewShotDataset> d = LoadFewShotDataset(spec, 0);
  ASSERT_OK(d.status());
  EXPECT_EQ(d->images.height, 14);
  EXPECT_EQ(d->images.pixels.size(), 70000u * 14 * 14);
  std::set<int32_t> train, test;
  for (const ClassRef& r : d->train_classes) train.insert(r.base);
  for (const ClassRef& r : d->test_classes) test.insert(r.base);
  EXPECT_EQ(train, (std::set<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(test, (std::set<int32_t>{5, 6, 7, 8, 9}));
  EXPECT_TRUE(d->validation_classes.empty());
  EXPECT_THAT(d->split_description, HasSubstr("Ankle boot"));
}

void WriteGz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), bytes.size()), static_cast<int>(bytes.size()));
  gzclose(f);
}

std::string Be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

TEST(FashionMnistTest, BadFilesAreClearErrors) {
  const std::string dir = ScratchDir("fashion_bad");
  absl::StatusOr<ImageSet> images = LoadFashionMnist(dir, 28);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(images.status().message(), HasSubstr("train-images-idx3-ubyte"));

  // Two 28x28 images, labels file with a bad magic.
  WriteGz(dir + "/train-images-idx3-ubyte.gz",
          Be32(0x803) + Be32(2) + Be32(28) + Be32(28) + std::string(2 * 784, '\1'));
  WriteGz(dir + "/train-labels-idx1-ubyte.gz", Be32(0x802) + Be32(2) + std::string("\1\2"));
  images = LoadFashionMnist(dir, 28);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(images.status().message(), HasSubstr("train-labels-idx1-ubyte: not an IDX1"));

  // Label out of range.
  WriteGz(dir + "/train-labels-idx1-ubyte.gz", Be32(0x801) + Be32(2) + std::string("\1\x0c"));
  images = LoadFashionMnist(dir, 28);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(images.status().message(), HasSubstr("label 12"));

  // Truncated images.
  WriteGz(dir + "/train-labels-idx1-ubyte.gz", Be32(0x801) + Be32(2) + std::string("\1\2"));
  WriteGz(dir + "/train-images-idx3-ubyte.gz",
          Be32(0x803) + Be32(2) + Be32(28) + Be32(28) + std::string(784, '\1'));
  images = LoadFashionMnist(dir, 28);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(images.status().message(), HasSubstr("truncated"));

  // Wrong dimensions.
  WriteGz(dir + "/train-images-idx3-ubyte.gz",
          Be32(0x803) + Be32(2) + Be32(32) + Be32(32) + std::string(2 * 1024, '\1'));
  images = LoadFashionMnist(dir, 28);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(images.status().message(), HasSubstr("32x32"));
}

}  // namespace
}  // namespace metatrain::data
