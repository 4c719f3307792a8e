#ifndef METATRAIN_COMMON_RPC_TENSOR_CODEC_H_
#define METATRAIN_COMMON_RPC_TENSOR_CODEC_H_

// The one place where tensors meet protos. A list of tensors (meta-parameters or one
// task's meta-gradient, in the order of the job's ParamSpecs) travels as a sequence of
// v1::TensorChunk: every tensor is cut into pieces of at most `max_chunk_bytes` bytes of
// raw little-endian data; the first piece of each tensor carries its dtype and shape.
// The receiving side feeds the pieces, in order, to a TensorAssembler that checks every
// one of them against the layout it expects before any byte lands in a tensor.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/meta/params.h"
#include "metatrain/v1/tensor.pb.h"

namespace metatrain::rpc {

// gRPC's default message limit is 4 MiB; 1 MiB pieces leave ample room for the envelope.
inline constexpr int64_t kDefaultMaxChunkBytes = 1 << 20;

absl::StatusOr<v1::DType> ToProtoDType(at::ScalarType dtype);
absl::StatusOr<at::ScalarType> FromProtoDType(v1::DType dtype);
std::string DTypeName(v1::DType dtype);

// Cuts `tensors` into chunks, tensor by tensor, in order. `names` (optional: empty or one
// per tensor) fill TensorChunk.name. Every tensor yields at least one chunk (an empty
// tensor: one chunk without data). Pieces hold whole elements, so max_chunk_bytes is
// rounded down to a multiple of the element size. INVALID_ARGUMENT for an undefined
// tensor, an unsupported dtype, a name list of the wrong length or max_chunk_bytes
// smaller than one element. Tensors may live on any device; they are copied to the CPU.
absl::StatusOr<std::vector<v1::TensorChunk>> EncodeTensors(
    const meta::TensorList& tensors, const std::vector<std::string>& names = {},
    int64_t max_chunk_bytes = kDefaultMaxChunkBytes);

// Same, naming each tensor after its spec (specs.size() must equal tensors.size()).
absl::StatusOr<std::vector<v1::TensorChunk>> EncodeTensors(
    const meta::TensorList& tensors, const std::vector<meta::ParamSpec>& specs,
    int64_t max_chunk_bytes = kDefaultMaxChunkBytes);

// Rebuilds a tensor list from chunks that arrive in order, validating each chunk against
// the expected specs and dtype:
//   - tensor_index must be the tensor being assembled (or the next one once it is full);
//   - offset must equal the bytes received so far for that tensor, and data must not run
//     past total_bytes, which must equal the spec's element count times the element size;
//   - dtype (required on the first chunk of a tensor) and shape (required there too,
//     unless the spec is a scalar) must equal the expected ones wherever they are given;
//   - a non-empty name must equal the spec's name;
//   - every completed floating-point tensor must hold finite values only.
// Any violation returns INVALID_ARGUMENT naming the tensor and the field, and poisons the
// assembler: later Add calls return the same error until Reset. Nothing partial escapes.
// Thread-compatible (one assembler per stream and per tensor list).
class TensorAssembler {
 public:
  TensorAssembler(std::vector<meta::ParamSpec> specs, at::ScalarType dtype);

  absl::Status Add(const v1::TensorChunk& chunk);

  // All tensors received in full.
  bool complete() const;

  // The assembled tensors (CPU, contiguous, of the expected dtype). FAILED_PRECONDITION
  // naming the first missing tensor unless complete(); the assembler's error if poisoned.
  // Leaves the assembler empty (as after Reset).
  absl::StatusOr<meta::TensorList> Finish();

  // Forgets everything received, and any error.
  void Reset();

  const std::vector<meta::ParamSpec>& specs() const { return specs_; }
  at::ScalarType dtype() const { return dtype_; }

 private:
  absl::Status AddImpl(const v1::TensorChunk& chunk);
  std::string Describe(int64_t index) const;

  std::vector<meta::ParamSpec> specs_;
  at::ScalarType dtype_;
  v1::DType proto_dtype_ = v1::DTYPE_UNSPECIFIED;
  int64_t element_size_ = 0;
  meta::TensorList tensors_;
  // Index of the tensor being filled and the bytes it has received.
  int64_t current_ = 0;
  int64_t received_bytes_ = 0;
  absl::Status error_;
};

// Decodes a whole chunk sequence at once (tests, small lists).
absl::StatusOr<meta::TensorList> DecodeTensors(const std::vector<v1::TensorChunk>& chunks,
                                               const std::vector<meta::ParamSpec>& specs,
                                               at::ScalarType dtype);

}  // namespace metatrain::rpc

#endif  // METATRAIN_COMMON_RPC_TENSOR_CODEC_H_
