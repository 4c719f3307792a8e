// Folders of <class>/*.png as a dataset, and bring-your-own evaluation episodes, on small
// folders the tests write with libpng.

#include "common/data/image_folder.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "common/data/episodes.h"
#include "common/data/image_dataset.h"
#include "common/data/png_encoder.h"
#include "common/data/resize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/data/data_test_util.h"

namespace metatrain::data {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::PatternImage;
using testing::ScratchDir;

// classes[i] gets counts[i] images of size (h, w) with `channels`.
void WriteClasses(const std::string& dir, const std::vector<std::string>& classes,
                  const std::vector<int>& counts, int channels, int h, int w) {
  for (size_t c = 0; c < classes.size(); ++c) {
    fs::create_directories(dir + "/" + classes[c]);
    for (int i = 0; i < counts[c]; ++i) {
      ASSERT_OK(WritePngFile(PatternImage(channels, h, w, 10 * c + i),
                             dir + "/" + classes[c] + "/img" + std::to_string(i) + ".png"));
    }
  }
}

TEST(ImageFolderTest, LoadsClassesInNameOrderResized) {
  const std::string dir = ScratchDir("folder_gray");
  WriteClasses(dir, {"zeta", "alpha", "mid"}, {2, 3, 1}, 1, 40, 30);
  std::ofstream(dir + "/alpha/notes.txt") << "ignored";
  fs::create_directories(dir + "/.hidden");
  ImageFolderOptions options;
  options.image_size = 12;
  absl::StatusOr<ImageSet> images = LoadImageFolder(dir, options);
  ASSERT_OK(images.status());
  EXPECT_THAT(images->class_names, ElementsAre("alpha", "mid", "zeta"));
  EXPECT_THAT(images->labels, ElementsAre(0, 0, 0, 1, 2, 2));
  EXPECT_EQ(images->channels, 1);
  EXPECT_EQ(images->height, 12);
  ASSERT_EQ(images->pixels.size(), 6u * 12 * 12);
  // alpha/img0.png was PatternImage(seed 10), resized.
  const DecodedImage expected = ResizeLanczos(PatternImage(1, 40, 30, 10), 12, 12);
  EXPECT_EQ(std::vector<uint8_t>(images->pixels.begin(), images->pixels.begin() + 144),
            expected.pixels);
}

TEST(ImageFolderTest, AnyColourImageMakesTheSetRgb) {
  const std::string dir = ScratchDir("folder_rgb");
  WriteClasses(dir, {"a"}, {2}, 1, 8, 8);
  WriteClasses(dir, {"b"}, {1}, 3, 9, 7);
  ImageFolderOptions options;
  options.image_size = 8;
  absl::StatusOr<ImageSet> images = LoadImageFolder(dir, options);
  ASSERT_OK(images.status());
  EXPECT_EQ(images->channels, 3);
  ASSERT_EQ(images->pixels.size(), 3u * 3 * 64);
  // A gray image is repeated on the three channels.
  const DecodedImage gray = PatternImage(1, 8, 8, 0);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(std::vector<uint8_t>(images->pixels.begin() + 64 * c,
                                   images->pixels.begin() + 64 * (c + 1)),
              gray.pixels);
  }
}

TEST(ImageFolderTest, ErrorsNameTheProblem) {
  const std::string dir = ScratchDir("folder_errors");
  ImageFolderOptions options;
  EXPECT_EQ(LoadImageFolder(dir + "/none", options).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadImageFolder(dir, options).status().code(), absl::StatusCode::kInvalidArgument);
  WriteClasses(dir, {"a"}, {1}, 1, 8, 8);
  fs::create_directories(dir + "/empty");
  absl::StatusOr<ImageSet> images = LoadImageFolder(dir, options);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(images.status().message(), HasSubstr("empty: no PNG"));
  fs::remove(dir + "/empty");
  std::ofstream(dir + "/a/broken.png") << "\x89PNG\r\n\x1a\nnot really";
  images = LoadImageFolder(dir, options);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(images.status().message(), HasSubstr("a/broken.png"));
}

TEST(ImageFolderTest, FewShotSplitIsClassDisjointAndFixed) {
  const std::string dir = ScratchDir("folder_split");
  std::vector<std::string> classes;
  for (int c = 0; c < 20; ++c) classes.push_back("class" + std::to_string(c));
  WriteClasses(dir, classes, std::vector<int>(20, 2), 1, 10, 10);
  v1::TaskSpec spec;
  spec.set_family("image_folder");
  spec.set_data_dir(dir);
  spec.set_ways(2);
  absl::StatusOr<FewShotDataset> d = LoadFewShotDataset(spec, 1);
  ASSERT_OK(d.status());
  // 15% of 20 = 3 test, 3 validation, 14 train.
  EXPECT_EQ(d->train_classes.size(), 14u);
  EXPECT_EQ(d->validation_classes.size(), 3u);
  EXPECT_EQ(d->test_classes.size(), 3u);
  std::set<int32_t> all;
  for (const auto* refs : {&d->train_classes, &d->validation_classes, &d->test_classes}) {
    for (const ClassRef& r : *refs) {
      EXPECT_TRUE(all.insert(r.base).second) << "class " << r.base << " in two splits";
      EXPECT_EQ(r.quarter_turns, 0);
    }
  }
  EXPECT_EQ(all.size(), 20u);
  EXPECT_EQ(d->examples_by_class.size(), 20u);
  absl::StatusOr<FewShotDataset> again = LoadFewShotDataset(spec, 2);
  ASSERT_OK(again.status());
  EXPECT_EQ(again->test_classes, d->test_classes);

  // 5-way needs 5 classes in each split: 20 classes give 5 / 5 / 10.
  spec.set_ways(5);
  d = LoadFewShotDataset(spec, 1);
  ASSERT_OK(d.status());
  EXPECT_EQ(d->test_classes.size(), 5u);
  EXPECT_EQ(d->validation_classes.size(), 5u);
  EXPECT_EQ(d->train_classes.size(), 10u);
  spec.set_ways(7);
  d = LoadFewShotDataset(spec, 1);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("20 classes"));
}

TEST(EpisodesTest, LoadsSupportAndQueryWithSharedLabels) {
  const std::string dir = ScratchDir("episodes");
  WriteClasses(dir + "/ep1/support", {"dog", "cat"}, {2, 1}, 1, 16, 16);
  WriteClasses(dir + "/ep1/query", {"dog"}, {3}, 1, 20, 20);
  WriteClasses(dir + "/ep0/support", {"x", "y", "z"}, {1, 1, 1}, 1, 16, 16);
  WriteClasses(dir + "/ep0/query", {"z", "x"}, {1, 2}, 1, 16, 16);
  absl::StatusOr<EpisodeSet> set = LoadEpisodes(dir, 8);
  ASSERT_OK(set.status());
  EXPECT_EQ(set->channels, 1);
  ASSERT_EQ(set->episodes.size(), 2u);
  const Episode& ep0 = set->episodes[0];
  EXPECT_EQ(ep0.name, "ep0");
  EXPECT_THAT(ep0.support.class_names, ElementsAre("x", "y", "z"));
  EXPECT_THAT(ep0.support.labels, ElementsAre(0, 1, 2));
  EXPECT_THAT(ep0.query.class_names, ElementsAre("x", "y", "z"));
  EXPECT_THAT(ep0.query.labels, ElementsAre(0, 0, 2));
  const Episode& ep1 = set->episodes[1];
  EXPECT_THAT(ep1.support.class_names, ElementsAre("cat", "dog"));
  EXPECT_THAT(ep1.support.labels, ElementsAre(0, 1, 1));
  EXPECT_THAT(ep1.query.labels, ElementsAre(1, 1, 1));
  EXPECT_EQ(ep1.query.pixels.size(), 3u * 64);

  // One colour image anywhere makes every episode RGB.
  ASSERT_OK(WritePngFile(PatternImage(3, 5, 5, 1), dir + "/ep1/query/dog/rgb.png"));
  set = LoadEpisodes(dir, 8);
  ASSERT_OK(set.status());
  EXPECT_EQ(set->channels, 3);
  EXPECT_EQ(set->episodes[0].support.channels, 3);
  EXPECT_EQ(set->episodes[0].support.pixels.size(), 3u * 3 * 64);
}

TEST(EpisodesTest, QueryClassWithoutSupportAndMissingPartsAreErrors) {
  const std::string dir = ScratchDir("episodes_bad");
  WriteClasses(dir + "/ep/support", {"a"}, {1}, 1, 8, 8);
  absl::StatusOr<EpisodeSet> set = LoadEpisodes(dir, 8);
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(set.status().message(), HasSubstr("no query/ folder"));
  WriteClasses(dir + "/ep/query", {"b"}, {1}, 1, 8, 8);
  set = LoadEpisodes(dir, 8);
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(set.status().message(), HasSubstr("query class 'b' has no support"));
  EXPECT_EQ(LoadEpisodes(dir + "/none", 8).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace metatrain::data
