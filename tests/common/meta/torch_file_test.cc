// Untrusted torch.save files (common/meta/torch_file.h, checkpoint.h, tensor files):
// crafted bad files each give a clear INVALID_ARGUMENT, never a crash or an exception.

#include "common/meta/torch_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <zip.h>

#include <cmath>
#include <fstream>
#include <limits>

#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/meta/task_family.h"
#include "tests/common/meta/python_util.h"

namespace metatrain::meta {
namespace {

using ::testing::HasSubstr;

std::string Serialize(const StateDict& state) {
  auto bytes = SerializeStateDict(state);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : "";
}

std::string ValidBytes() { return Serialize({{"w", at::ones({4, 3})}, {"b", at::zeros({4})}}); }

void ExpectRefused(const std::string& bytes, const std::string& message) {
  auto state = DeserializeStateDict(bytes);
  ASSERT_FALSE(state.ok()) << message;
  EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument) << state.status();
  EXPECT_THAT(std::string(state.status().message()), HasSubstr(message));
}

std::string WriteTemp(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(TorchFileTest, ValidFilesPassBothChecks) {
  const std::string bytes = ValidBytes();
  EXPECT_TRUE(CheckTorchArchive(bytes, {}).ok()) << CheckTorchArchive(bytes, {});
  auto state = DeserializeStateDict(bytes);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(at::equal(state->at("w"), at::ones({4, 3})));
}

TEST(TorchFileTest, NonZipAndTruncatedFilesAreRefusedBeforeLibTorch) {
  ExpectRefused("", "not a torch.save file: not a zip archive");
  ExpectRefused("hello, I am not a checkpoint at all", "not a zip archive");
  ExpectRefused(std::string("\x80\x02}q\x00.", 6), "not a zip archive");  // a bare pickle
  const std::string bytes = ValidBytes();
  for (size_t keep : {size_t{30}, bytes.size() / 2, bytes.size() - 10}) {
    ExpectRefused(bytes.substr(0, keep), "not a torch.save file");
  }
  // Random damage inside the archive's records: refused, whatever it hits.
  for (size_t at = 40; at < bytes.size(); at += 97) {
    std::string damaged = bytes;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x5a);
    auto state = DeserializeStateDict(damaged);
    if (!state.ok()) {
      EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument) << state.status();
    }
  }
}

TEST(TorchFileTest, OversizedFilesAndCountsAreRefused) {
  TorchFileLimits small;
  small.max_file_bytes = 100;
  EXPECT_THAT(std::string(CheckTorchArchive(ValidBytes(), small).message()),
              HasSubstr("over the limit of 100"));
  TorchFileLimits few;
  few.max_entries = 2;
  EXPECT_THAT(std::string(CheckTorchArchive(ValidBytes(), few).message()),
              HasSubstr("records, over the limit of 2"));
  TorchFileLimits elements;
  elements.max_tensor_elements = 5;
  auto state = DeserializeStateDict(ValidBytes(), elements);
  EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(state.status().message()), HasSubstr("more than 5 elements"));
}

// A tensor whose declared shape reaches far past the bytes stored for it: LibTorch's
// unpickler would hand back a view that reads out of bounds.
TEST(TorchFileTest, HugeDeclaredSizeIsRefused) {
  at::Tensor small = at::zeros({3});
  at::Tensor lying = at::empty({0});
  lying.set_(small.storage(), 0, {3}, {1});
  lying.unsafeGetTensorImpl()->set_sizes_and_strides(at::IntArrayRef({int64_t{1} << 26}),
                                                     at::IntArrayRef({int64_t{1}}));
  c10::Dict<std::string, at::Tensor> dict;
  dict.insert("w", lying);
  const std::vector<char> saved = torch::pickle_save(c10::IValue(dict));
  const std::string bytes(saved.begin(), saved.end());
  ExpectRefused(bytes, "needs more than the 12 bytes stored for it");
  // Strides that jump out of the storage.
  lying.unsafeGetTensorImpl()->set_sizes_and_strides(at::IntArrayRef({int64_t{3}}),
                                                     at::IntArrayRef({int64_t{1000}}));
  c10::Dict<std::string, at::Tensor> strided;
  strided.insert("w", lying);
  const std::vector<char> saved2 = torch::pickle_save(c10::IValue(strided));
  ExpectRefused(std::string(saved2.begin(), saved2.end()), "stored for it");
}

TEST(TorchFileTest, WrongDtypesAreRefused) {
  ExpectRefused(Serialize({{"w", at::zeros({3}, at::kInt)}}), "'w': dtype Int");
  ExpectRefused(Serialize({{"w", at::zeros({3}, at::kHalf)}}), "'w': dtype Half");
  ExpectRefused(Serialize({{"w", at::zeros({3}, at::kComplexFloat)}}), "dtype ComplexFloat");
  // Parameters must be float32 or float64 even where a checkpoint may hold int64.
  auto state = DeserializeStateDict(Serialize({{"w", at::zeros({3}, at::kLong)}}));
  ASSERT_TRUE(state.ok()) << state.status();
  auto params = FromStateDict({ParamSpec{"w", {3}, false}}, *state, at::kFloat);
  EXPECT_EQ(params.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(params.status().message()), HasSubstr("expected float32 or float64"));
}

TEST(TorchFileTest, WrongShapesAndNonFiniteParametersAreRefused) {
  auto state = DeserializeStateDict(ValidBytes());
  ASSERT_TRUE(state.ok()) << state.status();
  auto shape = FromStateDict({ParamSpec{"w", {4, 2}, false}, ParamSpec{"b", {4}, false}}, *state,
                             at::kFloat);
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(shape.status().message()),
              HasSubstr("w: checkpoint has [4, 3], model needs [4, 2]"));
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    at::Tensor w = at::ones({4, 3});
    w[1][2] = bad;
    auto poisoned = DeserializeStateDict(Serialize({{"w", w}, {"b", at::zeros({4})}}));
    ASSERT_TRUE(poisoned.ok()) << poisoned.status();
    auto params = FromStateDict({ParamSpec{"w", {4, 3}, false}, ParamSpec{"b", {4}, false}},
                                *poisoned, at::kFloat);
    EXPECT_EQ(params.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(params.status().message()), HasSubstr("w: checkpoint holds values "
                                                                  "that are not finite"));
  }
}

TEST(TorchFileTest, ArchivesNotLaidOutAsTorchSaveAreRefused) {
  const std::string dir = metatrain::testing::TempDir();
  const std::string good = WriteTemp(dir, "good.pt", ValidBytes());
  // Python's zipfile (standard library only) rewrites the archive in the ways below.
  const std::string script =
      "import zipfile, sys\n"
      "src = zipfile.ZipFile('" +
      good +
      "')\n"
      "top = src.namelist()[0].split('/')[0] + '/'\n"
      "def rewrite(out, edit, method=zipfile.ZIP_STORED):\n"
      "    with zipfile.ZipFile(out, 'w', method) as z:\n"
      "        for info in src.infolist():\n"
      "            for name, data in edit(info.filename, src.read(info)):\n"
      "                z.writestr(name, data)\n"
      "rewrite('" +
      dir +
      "/deflated.pt', lambda n, d: [(n, d)], "
      "zipfile.ZIP_DEFLATED)\n"
      "rewrite('" +
      dir +
      "/extra.pt', lambda n, d: [(n, d)] + "
      "([(top + 'code/evil.py', b'x')] if n.endswith('version') else []))\n"
      "rewrite('" +
      dir +
      "/nopickle.pt', lambda n, d: [] if "
      "n.endswith('data.pkl') else [(n, d)])\n"
      "rewrite('" +
      dir +
      "/twofolders.pt', lambda n, d: [(n.replace("
      "top, 'other/') if n.endswith('version') else n, d)])\n";
  int rc = 0;
  const std::string out = metatrain::testing::RunPython(script, &rc);
  if (rc != 0) GTEST_SKIP() << "no /usr/bin/python3: " << out;
  ExpectRefused(ReadAll(dir + "/deflated.pt"), "is compressed");
  ExpectRefused(ReadAll(dir + "/extra.pt"), "code/evil.py'");
  ExpectRefused(ReadAll(dir + "/nopickle.pt"), "no data.pkl record");
  ExpectRefused(ReadAll(dir + "/twofolders.pt"), "records in two folders");
}

// A torch.save-shaped archive around a hand-written data.pkl, stored as torch.save stores.
std::string ArchiveWithPickle(const std::string& pickle) {
  const std::string path = metatrain::testing::TempDir() + "/crafted.pt";
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  EXPECT_NE(archive, nullptr);
  const std::pair<std::string, std::string> records[] = {{"archive/data.pkl", pickle},
                                                         {"archive/version", "3\n"}};
  for (const auto& record : records) {
    zip_source_t* source =
        zip_source_buffer(archive, record.second.data(), record.second.size(), 0);
    const zip_int64_t index = zip_file_add(archive, record.first.c_str(), source, 0);
    EXPECT_GE(index, 0);
    zip_set_file_compression(archive, index, ZIP_CM_STORE, 0);
  }
  EXPECT_EQ(zip_close(archive), 0);
  return ReadAll(path);
}

// NOTE [Pickle depth]: found while writing these checks, a million nested lists made
// LibTorch overflow the stack when the value was destroyed (a segfault).
TEST(TorchFileTest, DeeplyNestedAndSelfContainingPicklesAreRefused) {
  std::string deep = "\x80\x02]";
  for (int i = 0; i < 1000000; ++i) deep += "(]";
  deep += std::string(999999, 'e') + "}.";
  ExpectRefused(ArchiveWithPickle(deep), "data.pkl: values nested deeper than 64");
  // Nesting through tuples alone, without marks.
  ExpectRefused(ArchiveWithPickle("\x80\x02]" + std::string(200, '\x85') + "."),
                "nested deeper than 64");
  // Lists built apart and chained through the memo: l0 holds l1 holds l2 ...
  std::string chained = "\x80\x02";
  for (int i = 0; i < 200; ++i) chained += std::string("]q") + static_cast<char>(i) + "0";
  for (int i = 0; i + 1 < 200; ++i) {
    chained += std::string("h") + static_cast<char>(i) + "h" + static_cast<char>(i + 1) + "a0";
  }
  chained += "}.";
  ExpectRefused(ArchiveWithPickle(chained), "nested deeper than 64");
  // A list that holds itself.
  const char kSelf[] =
      "\x80\x02]q\x00h\x00h\x00"
      "a0}.";  // holds NULs
  ExpectRefused(ArchiveWithPickle(std::string(kSelf, sizeof(kSelf) - 1)), "contain themselves");
  ExpectRefused(ArchiveWithPickle("\x80\x02}\xff."), "opcode 0xff");
  ExpectRefused(ArchiveWithPickle("\x80\x02}"), "ends without STOP");
  ExpectRefused(ArchiveWithPickle("\x80\x02h\x05."), "memo entry never written");
  // LONG_BINPUT far ahead of the memo: LibTorch would size its memo table by it (an 11 GB
  // allocation from a 1 KB file, found by the checkpoint fuzzer).
  ExpectRefused(ArchiveWithPickle(std::string("\x80\x02}r\x00\x00\x00\x90.", 9)),
                "memo index out of order");
  // Real files, from LibTorch and from Python's torch.save, stay well within.
  EXPECT_TRUE(DeserializeStateDict(ValidBytes()).ok());
}

TEST(TorchFileTest, LoadStateDictBoundsTheFileSize) {
  const std::string dir = metatrain::testing::TempDir();
  const std::string path = WriteTemp(dir, "w.pt", ValidBytes());
  TorchFileLimits small;
  small.max_file_bytes = 64;
  auto state = LoadStateDict(path, small);
  EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(state.status().message()), HasSubstr("max_checkpoint_mb"));
  EXPECT_TRUE(LoadStateDict(path).ok());
  EXPECT_EQ(LoadStateDict(dir + "/missing.pt").status().code(), absl::StatusCode::kNotFound);
}

TEST(TorchFileTest, TensorFilesAreCheckedTheSameWay) {
  const std::string dir = metatrain::testing::TempDir();
  auto spec_for = [](const std::string& path) {
    v1::JobSpec spec;
    spec.set_algorithm("maml");
    spec.mutable_tasks()->set_family("tensor_file");
    spec.mutable_tasks()->set_tensor_file(path);
    auto normalized = NormalizeJobSpec(spec);
    EXPECT_TRUE(normalized.ok()) << normalized.status();
    return *normalized;
  };
  const at::Tensor x = at::randn({4, 5, 2});
  const at::Tensor y = at::randn({4, 5, 1});
  const std::string good =
      WriteTemp(dir, "good.pt",
                Serialize({{"support_x", x}, {"support_y", y}, {"query_x", x}, {"query_y", y}}));
  EXPECT_TRUE(MakeTaskFamily(spec_for(good)).ok());
  const std::string half = WriteTemp(
      dir, "half.pt",
      Serialize(
          {{"support_x", x.to(at::kHalf)}, {"support_y", y}, {"query_x", x}, {"query_y", y}}));
  const std::string huge_labels =
      WriteTemp(dir, "labels.pt",
                Serialize({{"support_x", x},
                           {"support_y", at::full({4, 5}, int64_t{1} << 40, at::kLong)},
                           {"query_x", x},
                           {"query_y", at::zeros({4, 5}, at::kLong)}}));
  const std::string truncated = WriteTemp(dir, "truncated.pt", ReadAll(good).substr(0, 200));
  for (const auto& [path, message] :
       std::vector<std::pair<std::string, std::string>>{{half, "'support_x': dtype Half"},
                                                        {huge_labels, "labels must be < 65536"},
                                                        {truncated, "not a torch.save file"}}) {
    auto family = MakeTaskFamily(spec_for(path));
    ASSERT_FALSE(family.ok()) << path;
    EXPECT_EQ(family.status().code(), absl::StatusCode::kInvalidArgument) << family.status();
    EXPECT_THAT(std::string(family.status().message()), HasSubstr(message));
    EXPECT_THAT(std::string(family.status().message()), HasSubstr("tasks.tensor_file"));
  }
  JobFileLimits small;
  small.tensor_file.max_file_bytes = 100;
  auto large = MakeTaskFamily(spec_for(good), small);
  EXPECT_EQ(large.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(large.status().message()), HasSubstr("max_tensor_file_mb"));
}

}  // namespace
}  // namespace metatrain::meta
