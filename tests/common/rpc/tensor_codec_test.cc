#include "common/rpc/tensor_codec.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace metatrain::rpc {
namespace {

using meta::ParamSpec;
using meta::TensorList;
using ::testing::HasSubstr;

// Deterministic, non-trivial contents without torch's generators.
at::Tensor Ramp(const std::vector<int64_t>& shape, at::ScalarType dtype, double scale = 0.37) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return (at::arange(n, at::TensorOptions().dtype(at::kDouble)) * scale)
      .sin()
      .to(dtype)
      .reshape(shape);
}

std::vector<ParamSpec> SpecsOf(const TensorList& tensors) {
  std::vector<ParamSpec> specs;
  for (size_t i = 0; i < tensors.size(); ++i) {
    specs.push_back({"p" + std::to_string(i), tensors[i].sizes().vec(), false});
  }
  return specs;
}

void ExpectBitEqual(const TensorList& a, const TensorList& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].sizes(), b[i].sizes()) << i;
    EXPECT_EQ(a[i].scalar_type(), b[i].scalar_type()) << i;
    EXPECT_TRUE(at::equal(a[i], b[i])) << i;
  }
}

TEST(TensorCodecTest, RoundTripsOddSizesAndDtypes) {
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    TensorList tensors = {Ramp({7, 3}, dtype), Ramp({1}, dtype),       Ramp({}, dtype),
                          Ramp({0, 5}, dtype), Ramp({13}, dtype, 1.1), Ramp({2, 3, 5, 7}, dtype)};
    auto specs = SpecsOf(tensors);
    // 12 bytes: 3 floats or one double (rounded down to whole elements) per chunk.
    for (int64_t max_bytes : {int64_t{8}, int64_t{12}, int64_t{1000}, kDefaultMaxChunkBytes}) {
      auto chunks = EncodeTensors(tensors, specs, max_bytes);
      ASSERT_TRUE(chunks.ok()) << chunks.status();
      for (const auto& chunk : *chunks) {
        EXPECT_LE(static_cast<int64_t>(chunk.data().size()), max_bytes);
      }
      auto decoded = DecodeTensors(*chunks, specs, dtype);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      ExpectBitEqual(tensors, *decoded);
    }
  }
}

TEST(TensorCodecTest, TenMegabyteTensorTravelsInMegabyteChunks) {
  // 2.5 M floats = 10 MB.
  TensorList tensors = {Ramp({2500, 1000}, at::kFloat), Ramp({3}, at::kFloat)};
  auto specs = SpecsOf(tensors);
  auto chunks = EncodeTensors(tensors, specs);
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  // ceil(10,000,000 / 1,048,576) = 10 chunks for the big tensor, one for the small one.
  ASSERT_EQ(chunks->size(), 11u);
  int64_t total = 0;
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ((*chunks)[i].tensor_index(), 0);
    EXPECT_LE((*chunks)[i].data().size(), static_cast<size_t>(kDefaultMaxChunkBytes));
    EXPECT_EQ((*chunks)[i].offset(), total);
    total += (*chunks)[i].data().size();
    // The envelope stays far below gRPC's 4 MiB default.
    EXPECT_LT((*chunks)[i].ByteSizeLong(), size_t{4} << 20);
  }
  EXPECT_EQ(total, 10'000'000);
  EXPECT_EQ((*chunks)[0].shape_size(), 2);
  EXPECT_EQ((*chunks)[0].dtype(), v1::DTYPE_FLOAT32);
  EXPECT_EQ((*chunks)[0].name(), "p0");

  TensorAssembler assembler(specs, at::kFloat);
  for (const auto& chunk : *chunks) {
    EXPECT_FALSE(assembler.complete());
    ASSERT_TRUE(assembler.Add(chunk).ok());
  }
  EXPECT_TRUE(assembler.complete());
  auto decoded = assembler.Finish();
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectBitEqual(tensors, *decoded);
}

TEST(TensorCodecTest, WireBytesAreLittleEndianRawValues) {
  auto chunks = EncodeTensors({at::tensor({1.0f, -2.0f})});
  ASSERT_TRUE(chunks.ok());
  ASSERT_EQ(chunks->size(), 1u);
  const std::string& data = (*chunks)[0].data();
  ASSERT_EQ(data.size(), 8u);
  // 1.0f = 0x3f800000, -2.0f = 0xc0000000, least significant byte first.
  EXPECT_EQ(data, std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8));
}

TEST(TensorCodecTest, EncodeRejectsUnsupportedInput) {
  EXPECT_EQ(EncodeTensors({at::Tensor()}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeTensors({at::zeros({2}, at::kInt)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      EncodeTensors({at::zeros({2}, at::kDouble)}, std::vector<std::string>{}, 4).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeTensors({at::zeros({2})}, std::vector<std::string>{"a", "b"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

class BadChunkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tensors_ = {Ramp({4, 3}, at::kFloat), Ramp({5}, at::kFloat)};
    specs_ = SpecsOf(tensors_);
    auto chunks = EncodeTensors(tensors_, specs_, /*max_chunk_bytes=*/16);
    ASSERT_TRUE(chunks.ok());
    chunks_ = *chunks;
    // 48 bytes in 3 chunks, then 20 bytes in 2.
    ASSERT_EQ(chunks_.size(), 5u);
  }

  // Feeds chunks_ and returns the first error; expects the assembler to stay poisoned.
  absl::Status Feed() {
    TensorAssembler assembler(specs_, at::kFloat);
    for (const auto& chunk : chunks_) {
      absl::Status status = assembler.Add(chunk);
      if (!status.ok()) {
        EXPECT_FALSE(assembler.complete());
        EXPECT_EQ(assembler.Add(chunks_[0]).code(), status.code());
        EXPECT_FALSE(assembler.Finish().ok());
        return status;
      }
    }
    return assembler.Finish().status();
  }

  TensorList tensors_;
  std::vector<ParamSpec> specs_;
  std::vector<v1::TensorChunk> chunks_;
};

TEST_F(BadChunkTest, UntouchedChunksDecode) { EXPECT_TRUE(Feed().ok()); }

TEST_F(BadChunkTest, WrongDtype) {
  chunks_[0].set_dtype(v1::DTYPE_FLOAT64);
  absl::Status status = Feed();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("dtype DTYPE_FLOAT64, expected DTYPE_FLOAT32"));
}

TEST_F(BadChunkTest, MissingDtype) {
  chunks_[3].clear_dtype();
  EXPECT_THAT(Feed().message(), HasSubstr("tensor 1 (p1): first chunk carries no dtype"));
}

TEST_F(BadChunkTest, WrongShape) {
  chunks_[0].set_shape(0, 3);
  chunks_[0].set_shape(1, 4);
  absl::Status status = Feed();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tensor 0 (p0): shape [3, 4], expected [4, 3]"));
}

TEST_F(BadChunkTest, MissingShape) {
  chunks_[0].clear_shape();
  EXPECT_THAT(Feed().message(), HasSubstr("first chunk carries no shape"));
}

TEST_F(BadChunkTest, WrongTotal) {
  chunks_[1].set_total_bytes(52);
  EXPECT_THAT(Feed().message(), HasSubstr("total_bytes 52, expected 48"));
}

TEST_F(BadChunkTest, GapInOffsets) {
  chunks_[1].set_offset(20);
  EXPECT_THAT(Feed().message(), HasSubstr("offset 20, expected 16"));
}

TEST_F(BadChunkTest, DataPastTheEnd) {
  chunks_[2].mutable_data()->append("xxxx");
  EXPECT_THAT(Feed().message(), HasSubstr("run past total_bytes 48"));
}

TEST_F(BadChunkTest, SkippedTensor) {
  chunks_.erase(chunks_.begin() + 2);  // tensor 0 left incomplete
  EXPECT_THAT(Feed().message(), HasSubstr("out of order"));
}

TEST_F(BadChunkTest, IndexOutOfRange) {
  chunks_[3].set_tensor_index(2);
  EXPECT_THAT(Feed().message(), HasSubstr("tensor_index 2 out of range"));
}

TEST_F(BadChunkTest, WrongName) {
  chunks_[3].set_name("net.0.weight");
  EXPECT_THAT(Feed().message(), HasSubstr("name \"net.0.weight\" does not match"));
}

TEST_F(BadChunkTest, MissingLastChunk) {
  chunks_.pop_back();
  absl::Status status = Feed();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("tensor 1 (p1) not fully received"));
}

TEST_F(BadChunkTest, MissingTensor) {
  chunks_.resize(3);
  EXPECT_THAT(Feed().message(), HasSubstr("tensor 1 (p1) not fully received"));
}

TEST(TensorCodecTest, NonFiniteValuesAreRejected) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    // Checked chunk by chunk as they arrive, including elements split across two chunks
    // (chunks of 6 and 7 bytes).
    for (int64_t position : {0, 4, 5}) {
      for (int64_t chunk_bytes : {8, 6, 7}) {
        at::Tensor t = Ramp({6}, at::kFloat);
        t[position] = bad;
        TensorList tensors = {Ramp({2}, at::kFloat), t};
        auto chunks = EncodeTensors(tensors, SpecsOf(tensors), chunk_bytes);
        ASSERT_TRUE(chunks.ok());
        auto decoded = DecodeTensors(*chunks, SpecsOf(tensors), at::kFloat);
        EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument)
            << position << " " << chunk_bytes;
        EXPECT_THAT(decoded.status().message(), HasSubstr("tensor 1 (p1): non-finite values"));
      }
    }
  }
}

// A sender may cut chunks mid-element: the element is checked once its last byte arrives.
TEST(TensorCodecTest, NonFiniteElementSplitAcrossChunksIsRejected) {
  at::Tensor t = Ramp({4}, at::kFloat);
  t[1] = std::numeric_limits<float>::quiet_NaN();
  TensorList tensors = {t};
  auto whole = EncodeTensors(tensors, SpecsOf(tensors));
  ASSERT_TRUE(whole.ok());
  ASSERT_EQ(whole->size(), 1u);
  // Bytes [0, 6) and [6, 16): element 1 (bytes 4-7) straddles the cut.
  v1::TensorChunk first = (*whole)[0], second = (*whole)[0];
  first.set_data(whole->front().data().substr(0, 6));
  second.set_data(whole->front().data().substr(6));
  second.set_offset(6);
  TensorAssembler assembler(SpecsOf(tensors), at::kFloat);
  EXPECT_TRUE(assembler.Add(first).ok());
  absl::Status status = assembler.Add(second);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("non-finite values"));
}

TEST(TensorCodecTest, ResetRecoversAfterAnErrorAndAssemblerIsReusable) {
  TensorList tensors = {Ramp({3}, at::kDouble)};
  auto specs = SpecsOf(tensors);
  auto chunks = EncodeTensors(tensors, specs);
  ASSERT_TRUE(chunks.ok());
  TensorAssembler assembler(specs, at::kFloat);  // expects float32, gets float64
  EXPECT_FALSE(assembler.Add((*chunks)[0]).ok());
  TensorAssembler right(specs, at::kDouble);
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(right.Add((*chunks)[0]).ok());
    auto decoded = right.Finish();
    ASSERT_TRUE(decoded.ok());
    ExpectBitEqual(tensors, *decoded);
  }
  assembler.Reset();
  auto float_chunks = EncodeTensors({tensors[0].to(at::kFloat)}, specs);
  ASSERT_TRUE(float_chunks.ok());
  EXPECT_TRUE(assembler.Add((*float_chunks)[0]).ok());
  EXPECT_TRUE(assembler.complete());
}

TEST(TensorCodecTest, DtypeConversions) {
  EXPECT_EQ(*ToProtoDType(at::kFloat), v1::DTYPE_FLOAT32);
  EXPECT_EQ(*ToProtoDType(at::kDouble), v1::DTYPE_FLOAT64);
  EXPECT_EQ(*ToProtoDType(at::kLong), v1::DTYPE_INT64);
  EXPECT_FALSE(ToProtoDType(at::kHalf).ok());
  EXPECT_EQ(*FromProtoDType(v1::DTYPE_FLOAT64), at::kDouble);
  EXPECT_FALSE(FromProtoDType(v1::DTYPE_UNSPECIFIED).ok());
}

}  // namespace
}  // namespace metatrain::rpc
