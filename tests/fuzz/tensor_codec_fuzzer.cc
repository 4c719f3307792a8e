// Fuzz target: tensor-chunk reassembly (common/rpc/tensor_codec.h), as the coordinator and
// the workers run it on every chunk a peer sends. The input is a dtype byte and then a
// stream of v1::TensorChunk (fuzz_util.h ParseDelimited). Properties checked beyond "no
// crash": a refused chunk poisons the assembler; Finish succeeds exactly when complete();
// what it returns has the specs' shapes, the expected dtype and finite values, and encodes
// and decodes back to itself.

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/rpc/tensor_codec.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace meta = metatrain::meta;
namespace rpc = metatrain::rpc;
namespace v1 = metatrain::v1;

// A matrix, a vector, a scalar (whose first chunk may omit the shape) and an empty tensor.
const std::vector<meta::ParamSpec>& Specs() {
  static const auto* specs = new std::vector<meta::ParamSpec>{
      {"net.0.weight", {3, 2}, false},
      {"net.0.bias", {3}, false},
      {"scale", {}, true},
      {"empty", {0, 4}, true},
  };
  return *specs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const at::ScalarType dtype = (data[0] & 1) ? at::kDouble : at::kFloat;
  // How finely the round trip re-chunks what was accepted: 8 to 64 bytes, at least an element.
  const int64_t max_chunk_bytes = 8 * (1 + (data[1] & 7));
  const auto chunks = metatrain::fuzz::ParseDelimited<v1::TensorChunk>(data + 2, size - 2, 64);

  rpc::TensorAssembler assembler(Specs(), dtype);
  absl::Status first_error;
  for (const auto& chunk : chunks) {
    absl::Status status = assembler.Add(chunk);
    if (!first_error.ok()) {
      FUZZ_CHECK(status == first_error,
                 "a poisoned assembler accepted or changed its error: " + status.ToString());
    } else if (!status.ok()) {
      FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, status.ToString());
      first_error = status;
    }
  }
  const bool complete = assembler.complete();
  FUZZ_CHECK(!complete || first_error.ok(), "complete after an error");
  auto tensors = assembler.Finish();
  FUZZ_CHECK(tensors.ok() == complete, tensors.status().ToString());
  if (!tensors.ok()) return 0;

  FUZZ_CHECK(tensors->size() == Specs().size(), "wrong number of tensors");
  for (size_t i = 0; i < tensors->size(); ++i) {
    const at::Tensor& t = (*tensors)[i];
    FUZZ_CHECK(t.defined() && t.scalar_type() == dtype, Specs()[i].name + ": dtype");
    FUZZ_CHECK(t.sizes() == at::IntArrayRef(Specs()[i].shape), Specs()[i].name + ": shape");
    FUZZ_CHECK(t.is_contiguous(), Specs()[i].name + ": not contiguous");
    FUZZ_CHECK(meta::AllFinite(t), Specs()[i].name + ": non-finite values accepted");
  }
  auto encoded = rpc::EncodeTensors(*tensors, Specs(), max_chunk_bytes);
  FUZZ_CHECK(encoded.ok(), encoded.status().ToString());
  auto decoded = rpc::DecodeTensors(*encoded, Specs(), dtype);
  FUZZ_CHECK(decoded.ok(), decoded.status().ToString());
  for (size_t i = 0; i < tensors->size(); ++i) {
    FUZZ_CHECK(at::equal((*decoded)[i], (*tensors)[i]), Specs()[i].name + ": round trip");
  }
  return 0;
}
