// Omniglot from the shared copy of the original zips: counts, pixel conventions, the
// decode cache, the few-shot splits and errors for partial or corrupt copies.

#include "common/data/omniglot.h"

#include <zip.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "common/data/dataset_cache.h"
#include "common/data/image_dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/data/data_test_util.h"
#include "tests/testing/test_data.h"

namespace metatrain::data {
namespace {

namespace fs = std::filesystem;
using ::metatrain::testing::OmniglotDir;
using ::testing::HasSubstr;
using testing::ScratchDir;
using testing::TestCacheDir;

// Pillow 9.4: 255 - Image.open(<zip entry below>).convert('L').resize((28, 28), LANCZOS).
constexpr char kMagiEntry[] = "images_background/Alphabet_of_the_Magi/character01/0709_01.png";
const uint8_t kMagiPillow[28 * 28] = {
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   1,   1,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   1,   1,   1,   1,
    1,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   3,   1,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    1,   3,   0,   0,   0,   1,   0,   0,   0,   0,   0,   0,   0,   0,   3,   5,   6,   3,   3,
    0,   0,   0,   0,   0,   0,   0,   4,   0,   114, 246, 236, 154, 6,   0,   1,   0,   0,   0,
    0,   2,   0,   38,  246, 235, 230, 243, 246, 160, 0,   3,   0,   0,   0,   0,   2,   0,   52,
    109, 128, 248, 183, 15,  2,   1,   0,   0,   0,   1,   0,   19,  109, 198, 240, 107, 109, 66,
    0,   1,   0,   0,   0,   0,   0,   0,   0,   0,   0,   73,  255, 79,  0,   4,   0,   0,   0,
    0,   0,   1,   0,   135, 221, 0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   2,   7,
    4,   72,  253, 96,  0,   4,   0,   0,   0,   0,   0,   2,   4,   200, 185, 4,   9,   6,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   3,   1,   160, 254, 152, 0,   4,   0,   0,   0,   0,
    0,   1,   0,   224, 142, 0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   2,   1,   17,
    241, 255, 151, 0,   4,   0,   0,   0,   0,   0,   1,   0,   218, 151, 0,   114, 134, 0,   2,
    0,   0,   0,   0,   0,   0,   4,   0,   98,  247, 233, 159, 0,   4,   0,   0,   0,   0,   0,
    1,   0,   222, 153, 0,   138, 163, 0,   2,   0,   0,   0,   0,   0,   2,   2,   21,  247, 145,
    185, 171, 1,   8,   3,   0,   0,   0,   2,   0,   35,  252, 92,  0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   3,   0,   180, 244, 12,  196, 164, 0,   0,   0,   0,   0,   0,   0,   0,
    84,  254, 27,  0,   3,   2,   0,   0,   0,   0,   0,   0,   3,   0,   107, 255, 80,  0,   202,
    255, 207, 168, 182, 234, 234, 234, 235, 233, 248, 250, 11,  1,   1,   0,   0,   0,   0,   0,
    0,   0,   3,   0,   191, 255, 222, 96,  64,  124, 186, 204, 200, 136, 128, 129, 128, 127, 125,
    88,  1,   1,   0,   0,   0,   0,   0,   0,   0,   0,   1,   1,   21,  98,  145, 39,  0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   3,   4,   3,   3,   3,   4,   4,   4,   4,   4,   4,   3,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   1,   4,   4,   1,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,
};

// One decoded set per test process, through the persistent test cache (the first process
// of a build tree pays for the decode). Skipped without the data (NOTE [Test data]).
class OmniglotTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // LoadFewShotDataset finds the same cache through DefaultCacheDir.
    setenv("METATRAIN_CACHE_DIR", TestCacheDir().c_str(), 1);
  }
  static const ImageSet& Images() {
    static const ImageSet* images = [] {
      OmniglotOptions options;
      options.cache_dir = TestCacheDir();
      absl::StatusOr<ImageSet> loaded = LoadOmniglot(OmniglotDir(), options);
      return loaded.ok() ? new ImageSet(*std::move(loaded)) : nullptr;
    }();
    if (images == nullptr) ADD_FAILURE() << "cannot load Omniglot from " << OmniglotDir();
    static const ImageSet empty;
    return images != nullptr ? *images : empty;
  }
  void SetUp() override { SKIP_WITHOUT_OMNIGLOT(); }
};

TEST_F(OmniglotTest, HasEveryCharacterWithTwentyDrawings) {
  const ImageSet& images = Images();
  ASSERT_EQ(images.class_names.size(), 1623u);
  EXPECT_EQ(images.size(), 1623 * 20);
  EXPECT_EQ(images.channels, 1);
  EXPECT_EQ(images.height, 28);
  EXPECT_EQ(images.width, 28);
  EXPECT_EQ(images.pixels.size(), 1623u * 20 * 28 * 28);
  int background = 0;
  std::set<std::string> alphabets[2];
  for (const std::string& name : images.class_names) {
    background += IsOmniglotBackground(name);
    alphabets[IsOmniglotBackground(name) ? 0 : 1].insert(OmniglotAlphabet(name));
  }
  EXPECT_EQ(background, 964);
  EXPECT_EQ(alphabets[0].size(), 30u);
  EXPECT_EQ(alphabets[1].size(), 20u);
  EXPECT_TRUE(std::is_sorted(images.class_names.begin(), images.class_names.end()));
  for (const std::vector<int64_t>& group : GroupByClass(images)) ASSERT_EQ(group.size(), 20u);
}

TEST_F(OmniglotTest, InkIs255AndMatchesPillowLanczos) {
  const ImageSet& images = Images();
  ASSERT_GT(images.size(), 0);
  // Drawing 0709_01 is the first of the first class (Alphabet_of_the_Magi/character01).
  EXPECT_EQ(images.class_names[0], "images_background/Alphabet_of_the_Magi/character01");
  const std::vector<uint8_t> first(images.pixels.begin(), images.pixels.begin() + 28 * 28);
  EXPECT_EQ(first, std::vector<uint8_t>(std::begin(kMagiPillow), std::end(kMagiPillow)));

  // Strokes are a small bright part of a dark image, in every drawing.
  double total = 0;
  int64_t inked = 0, border = 0;
  for (int64_t i = 0; i < images.size(); ++i) {
    const uint8_t* p = images.pixels.data() + i * 28 * 28;
    ASSERT_GT(*std::max_element(p, p + 28 * 28), 128) << "drawing " << i << " has no ink";
    for (int k = 0; k < 28 * 28; ++k) {
      total += p[k];
      inked += p[k] > 127;
    }
    border += p[0] > 127;
  }
  const double mean = total / (255.0 * images.pixels.size());
  const double ink_fraction = static_cast<double>(inked) / images.pixels.size();
  // Measured: 8.4% mean intensity, 8.3% of pixels > 127 (inverted polarity gives ~92%).
  EXPECT_GT(mean, 0.05);
  EXPECT_LT(mean, 0.15);
  EXPECT_GT(ink_fraction, 0.05);
  EXPECT_LT(ink_fraction, 0.15);
  EXPECT_LT(border, images.size() / 100);
}

TEST_F(OmniglotTest, SecondLoadComesFromTheCacheAndIsIdentical) {
  const ImageSet& images = Images();
  OmniglotOptions options;
  options.cache_dir = TestCacheDir();
  OmniglotLoadInfo info;
  absl::StatusOr<ImageSet> again = LoadOmniglot(OmniglotDir(), options, &info);
  ASSERT_OK(again.status());
  EXPECT_TRUE(info.from_cache) << info.cache_note;
  EXPECT_TRUE(fs::exists(info.cache_path));
  EXPECT_EQ(again->class_names, images.class_names);
  EXPECT_EQ(again->labels, images.labels);
  EXPECT_EQ(again->pixels, images.pixels);
  // Another image size is another cache entry, not a stale hit.
  EXPECT_EQ(info.cache_path.find("-28-") != std::string::npos, true);
}

TEST_F(OmniglotTest, CorruptCacheIsRebuiltWithIdenticalData) {
  const ImageSet& images = Images();
  ASSERT_GT(images.size(), 0);
  const std::string cache_dir = ScratchDir("omniglot_corrupt_cache");
  OmniglotOptions options;
  options.cache_dir = cache_dir;
  // Seed the scratch cache from the shared one (no second decode) ...
  OmniglotLoadInfo shared_info;
  OmniglotOptions shared = options;
  shared.cache_dir = TestCacheDir();
  ASSERT_OK(LoadOmniglot(OmniglotDir(), shared, &shared_info).status());
  const std::string path = cache_dir + "/" + fs::path(shared_info.cache_path).filename().string();
  fs::copy_file(shared_info.cache_path, path);
  {
    // ... then flip the bits of one pixel byte in the middle of the file.
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const auto middle = static_cast<std::streamoff>(fs::file_size(path) / 2);
    f.seekg(middle);
    const char byte = static_cast<char>(f.get());
    f.seekp(middle);
    f.put(static_cast<char>(~byte));
  }
  const absl::StatusOr<ImageSet> corrupt = ReadImageSetCache(path, "any");
  ASSERT_EQ(corrupt.status().code(), absl::StatusCode::kDataLoss) << corrupt.status();
  OmniglotLoadInfo info;
  absl::StatusOr<ImageSet> rebuilt = LoadOmniglot(OmniglotDir(), options, &info);
  ASSERT_OK(rebuilt.status());
  EXPECT_FALSE(info.from_cache);
  EXPECT_EQ(info.cache_path, path);
  EXPECT_THAT(info.cache_note, HasSubstr("corrupt"));
  EXPECT_EQ(rebuilt->pixels, images.pixels);
  EXPECT_EQ(rebuilt->labels, images.labels);
  // The rebuilt cache is whole again.
  OmniglotLoadInfo info2;
  ASSERT_OK(LoadOmniglot(OmniglotDir(), options, &info2).status());
  EXPECT_TRUE(info2.from_cache) << info2.cache_note;
}

v1::TaskSpec OmniglotSpec(const std::string& split, bool no_rotations) {
  v1::TaskSpec spec;
  spec.set_family("omniglot");
  spec.set_data_dir(OmniglotDir());
  spec.set_split(split);
  spec.set_no_rotations(no_rotations);
  return spec;
}

std::set<int32_t> Bases(const std::vector<ClassRef>& refs) {
  std::set<int32_t> out;
  for (const ClassRef& r : refs) out.insert(r.base);
  return out;
}

void ExpectDisjoint(const FewShotDataset& d) {
  const std::set<int32_t> train = Bases(d.train_classes), val = Bases(d.validation_classes),
                          test = Bases(d.test_classes);
  for (int32_t c : val) EXPECT_EQ(train.count(c), 0u) << d.images.class_names[c];
  for (int32_t c : test) {
    EXPECT_EQ(train.count(c), 0u) << d.images.class_names[c];
    EXPECT_EQ(val.count(c), 0u) << d.images.class_names[c];
  }
}

TEST_F(OmniglotTest, MamlSplit) {
  absl::StatusOr<FewShotDataset> d = LoadFewShotDataset(OmniglotSpec("", false), 1);
  ASSERT_OK(d.status());
  EXPECT_EQ(d->images.class_names.size(), 1623u);
  EXPECT_EQ(d->examples_by_class.size(), 1623u);
  // 1200 "training" characters as in cbfinn/maml: 1100 meta-train + 100 meta-validation.
  EXPECT_EQ(Bases(d->train_classes).size(), 1100u);
  EXPECT_EQ(d->train_classes.size(), 4400u);
  EXPECT_EQ(d->validation_classes.size(), 100u);
  EXPECT_EQ(d->test_classes.size(), 423u);
  EXPECT_EQ(Bases(d->validation_classes).size(), 100u);
  EXPECT_EQ(Bases(d->test_classes).size(), 423u);
  ExpectDisjoint(*d);
  for (int32_t q = 0; q < 4; ++q) {
    EXPECT_EQ(std::count_if(d->train_classes.begin(), d->train_classes.end(),
                            [&](const ClassRef& r) { return r.quarter_turns == q; }),
              1100);
  }
  for (const ClassRef& r : d->test_classes) EXPECT_EQ(r.quarter_turns, 0);
  // Golden: the split is part of every published number; a change to the shuffle, the
  // RNG or the class order must be deliberate.
  int64_t test_sum = 0;
  for (const ClassRef& r : d->test_classes) test_sum += r.base;
  EXPECT_EQ(test_sum, 341508);
  std::vector<int32_t> first_validation;
  for (int i = 0; i < 5; ++i) first_validation.push_back(d->validation_classes[i].base);
  EXPECT_THAT(first_validation, ::testing::ElementsAre(6, 19, 28, 29, 36));
  // Both sets of alphabets reach every split: the shuffle is over characters.
  int test_background = 0;
  for (const ClassRef& r : d->test_classes)
    test_background += IsOmniglotBackground(d->images.class_names[r.base]);
  EXPECT_GT(test_background, 100);
  EXPECT_LT(test_background, 323);
  EXPECT_THAT(d->split_description, HasSubstr("maml"));
  EXPECT_THAT(d->split_description, HasSubstr("423"));
  RecordProperty("split_description", d->split_description);

  // Fixed: another load, even with another job seed, splits identically.
  absl::StatusOr<FewShotDataset> again = LoadFewShotDataset(OmniglotSpec("maml", false), 99);
  ASSERT_OK(again.status());
  EXPECT_EQ(again->train_classes, d->train_classes);
  EXPECT_EQ(again->validation_classes, d->validation_classes);
  EXPECT_EQ(again->test_classes, d->test_classes);

  absl::StatusOr<FewShotDataset> plain = LoadFewShotDataset(OmniglotSpec("maml", true), 1);
  ASSERT_OK(plain.status());
  EXPECT_EQ(plain->train_classes.size(), 1100u);
  EXPECT_EQ(Bases(plain->train_classes), Bases(d->train_classes));
  EXPECT_EQ(plain->test_classes, d->test_classes);
}

TEST_F(OmniglotTest, BackgroundEvaluationSplit) {
  absl::StatusOr<FewShotDataset> d =
      LoadFewShotDataset(OmniglotSpec("background_evaluation", false), 1);
  ASSERT_OK(d.status());
  const auto& names = d->images.class_names;
  EXPECT_EQ(d->test_classes.size(), 659u);
  for (const ClassRef& r : d->test_classes) EXPECT_FALSE(IsOmniglotBackground(names[r.base]));
  std::set<std::string> train_alphabets, val_alphabets;
  for (const ClassRef& r : d->train_classes) {
    EXPECT_TRUE(IsOmniglotBackground(names[r.base]));
    train_alphabets.insert(OmniglotAlphabet(names[r.base]));
  }
  for (const ClassRef& r : d->validation_classes) {
    EXPECT_TRUE(IsOmniglotBackground(names[r.base]));
    val_alphabets.insert(OmniglotAlphabet(names[r.base]));
  }
  EXPECT_EQ(train_alphabets.size(), 25u);
  EXPECT_EQ(val_alphabets.size(), 5u);
  for (const std::string& a : val_alphabets) EXPECT_EQ(train_alphabets.count(a), 0u) << a;
  EXPECT_EQ(Bases(d->train_classes).size() + d->validation_classes.size(), 964u);
  EXPECT_EQ(d->train_classes.size(), 4 * Bases(d->train_classes).size());
  ExpectDisjoint(*d);
  EXPECT_THAT(d->split_description, HasSubstr("background_evaluation"));
  RecordProperty("split_description", d->split_description);
}

// Refused before any file is read: these run without the data.
TEST(OmniglotSpecTest, BadSpecsAreInvalidArgument) {
  v1::TaskSpec spec = OmniglotSpec("by_stroke", false);
  absl::StatusOr<FewShotDataset> d = LoadFewShotDataset(spec, 1);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("tasks.split"));
  spec = OmniglotSpec("", false);
  spec.set_image_size(-3);
  EXPECT_EQ(LoadFewShotDataset(spec, 1).status().code(), absl::StatusCode::kInvalidArgument);
  spec = OmniglotSpec("", false);
  spec.set_family("cifar_fs");
  d = LoadFewShotDataset(spec, 1);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("tasks.family"));
}

TEST(OmniglotSpecTest, MissingDataIsNotFound) {
  const std::string empty = ScratchDir("omniglot_empty");
  for (const std::string& dir : {empty, empty + "/does_not_exist"}) {
    v1::TaskSpec spec = OmniglotSpec("", false);
    spec.set_data_dir(dir);
    absl::StatusOr<FewShotDataset> d = LoadFewShotDataset(spec, 1);
    ASSERT_EQ(d.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(d.status().message(), HasSubstr("tasks.data_dir: no Omniglot found in"));
    EXPECT_THAT(d.status().message(), HasSubstr(dir));
    EXPECT_THAT(d.status().message(), HasSubstr("images_background.zip"));
  }
}

// A copy of the shared zips in a scratch folder, images_background.zip edited by `edit`.
std::string ModifiedCopy(const std::string& name, const std::function<void(zip_t*)>& edit) {
  const std::string dir = ScratchDir(name);
  fs::copy_file(OmniglotDir() + "/images_evaluation.zip", dir + "/images_evaluation.zip");
  fs::copy_file(OmniglotDir() + "/images_background.zip", dir + "/images_background.zip");
  fs::permissions(dir + "/images_background.zip", fs::perms::owner_write, fs::perm_options::add);
  int error = 0;
  zip_t* z = zip_open((dir + "/images_background.zip").c_str(), 0, &error);
  EXPECT_NE(z, nullptr) << error;
  if (z == nullptr) return dir;
  edit(z);
  EXPECT_EQ(zip_close(z), 0);
  return dir;
}

void DeleteEntries(zip_t* z, const std::string& prefix, int max_count) {
  int deleted = 0;
  for (zip_int64_t i = 0; i < zip_get_num_entries(z, 0) && deleted < max_count; ++i) {
    const std::string name = zip_get_name(z, i, 0);
    if (name.rfind(prefix, 0) == 0) {
      EXPECT_EQ(zip_delete(z, i), 0);
      ++deleted;
    }
  }
  EXPECT_GT(deleted, 0);
}

absl::Status LoadUncached(const std::string& dir) {
  OmniglotOptions options;
  options.use_cache = false;
  options.threads = 1;
  return LoadOmniglot(dir, options).status();
}

TEST_F(OmniglotTest, TruncatedDrawingIsDataLossNamingIt) {
  const std::string dir = ModifiedCopy("omniglot_truncated_png", [](zip_t* z) {
    const zip_int64_t index = zip_name_locate(z, kMagiEntry, 0);
    ASSERT_GE(index, 0);
    static const char kHalfPng[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0i\0\0\0i\x01\0";
    zip_source_t* src = zip_source_buffer(z, kHalfPng, sizeof(kHalfPng) - 1, 0);
    ASSERT_GE(zip_file_replace(z, index, src, 0), 0);
  });
  const absl::Status status = LoadUncached(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr(kMagiEntry));
}

TEST_F(OmniglotTest, MissingCharacterIsDataLoss) {
  const std::string dir = ModifiedCopy("omniglot_missing_class", [](zip_t* z) {
    DeleteEntries(z, "images_background/Latin/character03/", 100);
  });
  const absl::Status status = LoadUncached(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("found 963 character folders, expected 964"));
  EXPECT_THAT(status.message(), HasSubstr("images_background.zip"));
}

TEST_F(OmniglotTest, MissingDrawingIsDataLossNamingTheCharacter) {
  const std::string dir = ModifiedCopy("omniglot_missing_drawing", [](zip_t* z) {
    DeleteEntries(z, "images_background/Korean/character05/0647_", 1);
  });
  const absl::Status status = LoadUncached(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("images_background/Korean/character05 has 19 drawings"));
}

TEST_F(OmniglotTest, TruncatedZipIsDataLossNamingIt) {
  const std::string dir = ScratchDir("omniglot_truncated_zip");
  fs::copy_file(OmniglotDir() + "/images_evaluation.zip", dir + "/images_evaluation.zip");
  std::ifstream in(OmniglotDir() + "/images_background.zip", std::ios::binary);
  std::string bytes(std::istreambuf_iterator<char>(in), {});
  std::ofstream(dir + "/images_background.zip", std::ios::binary)
      << bytes.substr(0, bytes.size() - 5000);
  const absl::Status status = LoadUncached(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr(dir + "/images_background.zip"));
}

TEST_F(OmniglotTest, UnpackedFoldersLoadLikeTheZip) {
  // A user who unzipped: one alphabet-sized check would not exercise the count rules, so
  // unpack the evaluation zip fully and keep background as a zip (mixed layouts work).
  const std::string dir = ScratchDir("omniglot_unpacked");
  fs::copy_file(OmniglotDir() + "/images_background.zip", dir + "/images_background.zip");
  int error = 0;
  zip_t* z = zip_open((OmniglotDir() + "/images_evaluation.zip").c_str(), ZIP_RDONLY, &error);
  ASSERT_NE(z, nullptr);
  std::vector<char> buffer;
  for (zip_int64_t i = 0; i < zip_get_num_entries(z, 0); ++i) {
    zip_stat_t st;
    ASSERT_EQ(zip_stat_index(z, i, 0, &st), 0);
    const std::string name = st.name;
    if (name.back() == '/') {
      fs::create_directories(dir + "/" + name);
      continue;
    }
    buffer.resize(st.size);
    zip_file_t* f = zip_fopen_index(z, i, 0);
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(zip_fread(f, buffer.data(), st.size), static_cast<zip_int64_t>(st.size));
    zip_fclose(f);
    fs::create_directories(fs::path(dir + "/" + name).parent_path());
    std::ofstream(dir + "/" + name, std::ios::binary).write(buffer.data(), st.size);
  }
  zip_close(z);
  OmniglotOptions options;
  options.cache_dir = dir + "/cache";
  OmniglotLoadInfo info;
  absl::StatusOr<ImageSet> loaded = LoadOmniglot(dir, options, &info);
  ASSERT_OK(loaded.status());
  EXPECT_FALSE(info.from_cache);
  EXPECT_EQ(loaded->class_names, Images().class_names);
  EXPECT_EQ(loaded->pixels, Images().pixels);

  // Removing one unpacked drawing is caught (the folder key changes: no stale cache hit).
  const std::string victim = dir + "/images_evaluation/Angelic/character02";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(victim)) files.push_back(e.path());
  ASSERT_EQ(files.size(), 20u);
  fs::remove(files[0]);
  absl::StatusOr<ImageSet> broken = LoadOmniglot(dir, options, &info);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(broken.status().message(), HasSubstr("Angelic/character02 has 19 drawings"));
}

}  // namespace
}  // namespace metatrain::data
