// PNG decoding/encoding, the Pillow-exact Lanczos resampler, the zip reader and the cache
// file format, on known inputs.

#include <zip.h>
#include <zlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/data/dataset_cache.h"
#include "common/data/png_decoder.h"
#include "common/data/png_encoder.h"
#include "common/data/resize.h"
#include "common/data/zip_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/data/data_test_util.h"
#include "tests/testing/test_data.h"

namespace metatrain::data {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::PatternImage;
using testing::ScratchDir;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(PngTest, GrayAndRgbRoundTrip) {
  const std::string dir = ScratchDir("png_round_trip");
  for (int channels : {1, 3}) {
    const DecodedImage image = PatternImage(channels, 7, 11, channels);
    const std::string path = dir + "/image" + std::to_string(channels) + ".png";
    ASSERT_OK(WritePngFile(image, path));
    absl::StatusOr<DecodedImage> decoded = ReadPngFile(path);
    ASSERT_OK(decoded.status());
    EXPECT_EQ(decoded->channels, channels);
    EXPECT_EQ(decoded->height, 7);
    EXPECT_EQ(decoded->width, 11);
    EXPECT_EQ(decoded->pixels, image.pixels);
  }
}

TEST(PngTest, TruncatedOrGarbageBytesAreDataLossNamingTheFile) {
  const std::string dir = ScratchDir("png_truncated");
  ASSERT_OK(WritePngFile(PatternImage(1, 20, 20, 3), dir + "/ok.png"));
  const std::string bytes = ReadFile(dir + "/ok.png");
  for (const std::string& bad :
       {bytes.substr(0, bytes.size() / 2), bytes.substr(0, 8), std::string("not a png at all")}) {
    absl::StatusOr<DecodedImage> decoded = DecodePng(bad, "some/dir/x.png");
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(decoded.status().message(), HasSubstr("some/dir/x.png"));
  }
  EXPECT_EQ(ReadPngFile(dir + "/missing.png").status().code(), absl::StatusCode::kNotFound);
}

// A valid PNG header claiming 100000 x 100000 pixels (its IHDR CRC is correct).
TEST(PngTest, AbsurdDimensionsAreDataLossNotACrash) {
  std::string chunk = "IHDR";
  for (uint32_t v : {100000u, 100000u}) {
    for (int shift : {24, 16, 8, 0}) chunk.push_back(static_cast<char>(v >> shift));
  }
  chunk += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit gray, no interlace
  const uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(chunk.data()), chunk.size());
  std::string png = "\x89PNG\r\n\x1a\n";
  png += std::string("\0\0\0\x0d", 4) + chunk;
  for (int shift : {24, 16, 8, 0}) png.push_back(static_cast<char>(crc >> shift));
  absl::StatusOr<DecodedImage> decoded = DecodePng(png, "huge.png");
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(decoded.status().message(), HasSubstr("huge.png"));
}

TEST(PngTest, DecodesOneBitOmniglotDrawingToZeroAnd255) {
  SKIP_WITHOUT_OMNIGLOT();
  absl::StatusOr<std::unique_ptr<ZipReader>> zip =
      ZipReader::Open(::metatrain::testing::OmniglotDir() + "/images_background.zip");
  ASSERT_OK(zip.status());
  const auto& entries = (*zip)->entries();
  auto it = std::find_if(entries.begin(), entries.end(), [](const ZipReader::Entry& e) {
    return e.name == "images_background/Alphabet_of_the_Magi/character01/0709_01.png";
  });
  ASSERT_NE(it, entries.end());
  absl::StatusOr<std::string> bytes = (*zip)->Read(*it);
  ASSERT_OK(bytes.status());
  absl::StatusOr<DecodedImage> image = DecodePng(*bytes, it->name);
  ASSERT_OK(image.status());
  EXPECT_EQ(image->channels, 1);
  EXPECT_EQ(image->height, 105);
  EXPECT_EQ(image->width, 105);
  int64_t black = 0;
  for (uint8_t v : image->pixels) {
    ASSERT_TRUE(v == 0 || v == 255) << int{v};
    black += v == 0;
  }
  // White paper, a thin black stroke.
  EXPECT_GT(black, 100);
  EXPECT_LT(black, 105 * 105 / 4);
}

// References computed by Pillow 9.4 (Debian 12 python3-pil):
//   a[y][x] = (37x + 53y + 7xy) % 256, 10 wide x 7 high, mode 'L';
//   Image.fromarray(a).resize((w, h), Image.LANCZOS).
DecodedImage Gradient() {
  DecodedImage image;
  image.height = 7;
  image.width = 10;
  for (int y = 0; y < 7; ++y) {
    for (int x = 0; x < 10; ++x) image.pixels.push_back((x * 37 + y * 53 + x * y * 7) % 256);
  }
  return image;
}

TEST(ResizeTest, DownscaleMatchesPillowLanczos) {
  const DecodedImage out = ResizeLanczos(Gradient(), 3, 4);
  EXPECT_EQ(out.height, 3);
  EXPECT_EQ(out.width, 4);
  EXPECT_THAT(out.pixels,
              ElementsAreArray({80, 137, 117, 92, 136, 102, 143, 116, 98, 144, 103, 99}));
}

TEST(ResizeTest, UpscaleMatchesPillowLanczos) {
  const DecodedImage out = ResizeLanczos(Gradient(), 9, 13);
  EXPECT_THAT(
      out.pixels,
      ElementsAreArray({0,   17,  53,  76,  102, 128, 162, 227, 229, 34,  0,   54,  69,  29,  54,
                        84,  115, 177, 234, 142, 66,  110, 60,  87,  154, 171, 79,  95,  172, 191,
                        110, 154, 93,  5,   72,  179, 134, 94,  137, 111, 154, 209, 143, 0,   11,
                        98,  165, 198, 202, 61,  6,   74,  151, 218, 138, 6,   73,  123, 158, 224,
                        246, 82,  57,  144, 172, 237, 120, 26,  69,  125, 229, 144, 44,  113, 132,
                        221, 166, 33,  103, 42,  42,  155, 225, 156, 49,  67,  148, 79,  100, 128,
                        92,  0,   66,  159, 188, 170, 62,  89,  179, 138, 30,  46,  112, 114, 66,
                        102, 210, 195, 34,  81,  207, 159, 9,   76,  203, 124, 0}));
}

TEST(ResizeTest, ConstantImageStaysConstantAndChannelsAreIndependent) {
  DecodedImage image;
  image.channels = 3;
  image.height = 105;
  image.width = 105;
  const int64_t plane = 105 * 105;
  image.pixels.resize(3 * plane);
  std::fill_n(image.pixels.begin(), plane, 0);
  std::fill_n(image.pixels.begin() + plane, plane, 77);
  std::fill_n(image.pixels.begin() + 2 * plane, plane, 255);
  const DecodedImage out = ResizeLanczos(image, 28, 28);
  ASSERT_EQ(out.pixels.size(), 3u * 28 * 28);
  for (int64_t i = 0; i < 28 * 28; ++i) {
    ASSERT_EQ(out.pixels[i], 0);
    ASSERT_EQ(out.pixels[28 * 28 + i], 77);
    ASSERT_EQ(out.pixels[2 * 28 * 28 + i], 255);
  }
}

// A zip of a few 105x105 PNGs, stored uncompressed, like a small Omniglot archive.
void WriteSmallZip(const std::string& path) {
  const std::string png_dir = ScratchDir("zip_reader_pngs");
  std::vector<std::string> pngs;
  for (int i = 0; i < 4; ++i) {
    const std::string png = absl::StrCat(png_dir, "/", i, ".png");
    ASSERT_OK(WritePngFile(PatternImage(1, 105, 105, i), png));
    pngs.push_back(ReadFile(png));
  }
  int error = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  ASSERT_NE(z, nullptr) << error;
  for (size_t i = 0; i < pngs.size(); ++i) {
    zip_source_t* source = zip_source_buffer(z, pngs[i].data(), pngs[i].size(), 0);
    const zip_int64_t index =
        zip_file_add(z, absl::StrCat("set/class", i, "/0.png").c_str(), source, 0);
    ASSERT_GE(index, 0);
    ASSERT_EQ(zip_set_file_compression(z, index, ZIP_CM_STORE, 0), 0);
  }
  ASSERT_EQ(zip_close(z), 0);  // writes the archive; the buffers must live until here
}

TEST(ZipReaderTest, MissingAndTruncatedArchivesAreClearErrors) {
  const std::string dir = ScratchDir("zip_reader");
  EXPECT_EQ(ZipReader::Open(dir + "/nope.zip").status().code(), absl::StatusCode::kNotFound);
  ASSERT_NO_FATAL_FAILURE(WriteSmallZip(dir + "/whole.zip"));
  const std::string bytes = ReadFile(dir + "/whole.zip");
  ASSERT_GT(bytes.size(), 1000u);
  // Whole, it opens; cut in half (the central directory gone), it must not.
  absl::StatusOr<std::unique_ptr<ZipReader>> whole = ZipReader::Open(dir + "/whole.zip");
  ASSERT_OK(whole.status());
  EXPECT_EQ((*whole)->entries().size(), 4u);
  std::ofstream(dir + "/half.zip", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  absl::StatusOr<std::unique_ptr<ZipReader>> zip = ZipReader::Open(dir + "/half.zip");
  ASSERT_FALSE(zip.ok());
  EXPECT_EQ(zip.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(zip.status().message(), HasSubstr("half.zip"));
}

ImageSet SmallSet() {
  ImageSet images;
  images.channels = 1;
  images.height = 3;
  images.width = 2;
  images.class_names = {"a", "b/c"};
  images.labels = {0, 1, 1};
  for (int i = 0; i < 18; ++i) images.pixels.push_back(i * 7);
  return images;
}

TEST(DatasetCacheTest, RoundTripStaleAndCorrupt) {
  const std::string dir = ScratchDir("cache_format");
  const std::string path = dir + "/sub/set.cache";
  const ImageSet images = SmallSet();
  ASSERT_OK(WriteImageSetCache(path, "key-1", images));
  absl::StatusOr<ImageSet> back = ReadImageSetCache(path, "key-1");
  ASSERT_OK(back.status());
  EXPECT_EQ(back->channels, 1);
  EXPECT_EQ(back->height, 3);
  EXPECT_EQ(back->width, 2);
  EXPECT_EQ(back->class_names, images.class_names);
  EXPECT_EQ(back->labels, images.labels);
  EXPECT_EQ(back->pixels, images.pixels);

  EXPECT_EQ(ReadImageSetCache(path, "key-2").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadImageSetCache(dir + "/none.cache", "key-1").status().code(),
            absl::StatusCode::kNotFound);

  const std::string bytes = ReadFile(path);
  // Every single-byte corruption and every truncation is detected.
  for (size_t at = 0; at < bytes.size(); ++at) {
    std::string bad = bytes;
    bad[at] ^= 0x5a;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
    absl::StatusOr<ImageSet> read = ReadImageSetCache(path, "key-1");
    ASSERT_FALSE(read.ok()) << "byte " << at;
    ASSERT_THAT(read.status().message(), HasSubstr(path)) << "byte " << at;
  }
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, len);
    ASSERT_FALSE(ReadImageSetCache(path, "key-1").ok()) << "length " << len;
  }
}

TEST(DatasetCacheTest, DefaultCacheDirPrefersExplicitThenUserCache) {
  // Restores the variables this test changes.
  struct SavedEnv {
    const char* name;
    std::string value;
    bool set;
  };
  std::vector<SavedEnv> saved;
  for (const char* name : {"METATRAIN_CACHE_DIR", "XDG_CACHE_HOME", "HOME"}) {
    const char* v = std::getenv(name);
    saved.push_back({name, v != nullptr ? v : "", v != nullptr});
  }
  const std::string data = ScratchDir("cache_dir_data");
  setenv("METATRAIN_CACHE_DIR", "/explicit", 1);
  setenv("XDG_CACHE_HOME", "/xdg", 1);
  setenv("HOME", "/home/someone", 1);
  EXPECT_EQ(DefaultCacheDir(data), "/explicit");
  unsetenv("METATRAIN_CACHE_DIR");
  EXPECT_EQ(DefaultCacheDir(data), "/xdg/metatrain");
  unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(DefaultCacheDir(data), "/home/someone/.cache/metatrain");
  unsetenv("HOME");
  EXPECT_EQ(DefaultCacheDir(data), data);
  EXPECT_NE(DefaultCacheDir("/proc/definitely/not/here"), "/proc/definitely/not/here");
  for (const SavedEnv& e : saved) {
    if (e.set) {
      setenv(e.name, e.value.c_str(), 1);
    } else {
      unsetenv(e.name);
    }
  }
}

}  // namespace
}  // namespace metatrain::data
