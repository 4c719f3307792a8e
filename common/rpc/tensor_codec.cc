#include "common/rpc/tensor_codec.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::rpc {
namespace {

// The wire format is little-endian; this build copies memory as is.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "tensor_codec copies raw memory and needs a little-endian host");

int64_t ElementSize(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT32:
      return 4;
    case v1::DTYPE_FLOAT64:
    case v1::DTYPE_INT64:
      return 8;
    default:
      return 0;
  }
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

template <typename Repeated>
std::string ShapeString(const Repeated& shape) {
  return absl::StrCat("[", absl::StrJoin(shape.begin(), shape.end(), ", "), "]");
}

}  // namespace

absl::StatusOr<v1::DType> ToProtoDType(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return v1::DTYPE_FLOAT32;
    case at::kDouble:
      return v1::DTYPE_FLOAT64;
    case at::kLong:
      return v1::DTYPE_INT64;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported tensor dtype ", c10::toString(dtype),
                       " (the wire carries float32, float64 and int64)"));
  }
}

absl::StatusOr<at::ScalarType> FromProtoDType(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT32:
      return at::kFloat;
    case v1::DTYPE_FLOAT64:
      return at::kDouble;
    case v1::DTYPE_INT64:
      return at::kLong;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported wire dtype ", DTypeName(dtype)));
  }
}

std::string DTypeName(v1::DType dtype) {
  const std::string& name = v1::DType_Name(dtype);
  return name.empty() ? absl::StrCat("DType(", static_cast<int>(dtype), ")") : name;
}

absl::StatusOr<std::vector<v1::TensorChunk>> EncodeTensors(const meta::TensorList& tensors,
                                                           const std::vector<std::string>& names,
                                                           int64_t max_chunk_bytes) {
  if (!names.empty() && names.size() != tensors.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeTensors: ", names.size(), " names for ", tensors.size(), " tensors"));
  }
  std::vector<v1::TensorChunk> chunks;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& tensor = tensors[i];
    const std::string label = names.empty() ? absl::StrCat("tensor ", i)
                                            : absl::StrCat("tensor ", i, " (", names[i], ")");
    if (!tensor.defined()) {
      return absl::InvalidArgumentError(absl::StrCat(label, " is undefined"));
    }
    ASSIGN_OR_RETURN(v1::DType dtype, ToProtoDType(tensor.scalar_type()));
    const int64_t element_size = ElementSize(dtype);
    if (max_chunk_bytes < element_size) {
      return absl::InvalidArgumentError(absl::StrCat("max_chunk_bytes must be >= ", element_size,
                                                     " (got ", max_chunk_bytes, ")"));
    }
    const int64_t piece = max_chunk_bytes / element_size * element_size;
    ASSIGN_OR_RETURN(at::Tensor cpu,
                     CatchTorch(label, [&] { return tensor.detach().to(at::kCPU).contiguous(); }));
    const int64_t total = cpu.numel() * element_size;
    const char* data = static_cast<const char*>(cpu.data_ptr());
    int64_t offset = 0;
    do {
      const int64_t size = std::min(piece, total - offset);
      v1::TensorChunk& chunk = chunks.emplace_back();
      chunk.set_tensor_index(static_cast<int32_t>(i));
      chunk.set_offset(offset);
      chunk.set_total_bytes(total);
      if (offset == 0) {
        if (!names.empty()) chunk.set_name(names[i]);
        chunk.set_dtype(dtype);
        for (int64_t d : cpu.sizes()) chunk.add_shape(d);
      }
      if (size > 0) chunk.set_data(data + offset, static_cast<size_t>(size));
      offset += size;
    } while (offset < total);
  }
  return chunks;
}

absl::StatusOr<std::vector<v1::TensorChunk>> EncodeTensors(
    const meta::TensorList& tensors, const std::vector<meta::ParamSpec>& specs,
    int64_t max_chunk_bytes) {
  if (specs.size() != tensors.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeTensors: ", specs.size(), " specs for ", tensors.size(), " tensors"));
  }
  std::vector<std::string> names;
  names.reserve(specs.size());
  for (const auto& spec : specs) names.push_back(spec.name);
  return EncodeTensors(tensors, names, max_chunk_bytes);
}

TensorAssembler::TensorAssembler(std::vector<meta::ParamSpec> specs, at::ScalarType dtype)
    : specs_(std::move(specs)), dtype_(dtype) {
  auto proto = ToProtoDType(dtype);
  if (proto.ok()) {
    proto_dtype_ = *proto;
    element_size_ = ElementSize(proto_dtype_);
  } else {
    error_ = proto.status();
  }
  Reset();
}

void TensorAssembler::Reset() {
  tensors_.assign(specs_.size(), at::Tensor());
  current_ = 0;
  received_bytes_ = 0;
  if (element_size_ > 0) error_ = absl::OkStatus();
}

std::string TensorAssembler::Describe(int64_t index) const {
  if (index < 0 || index >= static_cast<int64_t>(specs_.size())) {
    return absl::StrCat("tensor ", index);
  }
  return absl::StrCat("tensor ", index, " (", specs_[index].name, ")");
}

bool TensorAssembler::complete() const {
  if (!error_.ok()) return false;
  // Empty lists are complete at once; otherwise the last tensor must be full.
  if (specs_.empty()) return true;
  const int64_t last = static_cast<int64_t>(specs_.size()) - 1;
  return current_ == last && tensors_[last].defined() &&
         received_bytes_ == meta::NumElements(specs_[last]) * element_size_;
}

absl::Status TensorAssembler::Add(const v1::TensorChunk& chunk) {
  if (!error_.ok()) return error_;
  absl::Status status = AddImpl(chunk);
  if (!status.ok()) error_ = status;
  return status;
}

absl::Status TensorAssembler::AddImpl(const v1::TensorChunk& chunk) {
  const int64_t num = static_cast<int64_t>(specs_.size());
  const int64_t index = chunk.tensor_index();
  if (index < 0 || index >= num) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_index ", index, " out of range (", num, " tensors expected)"));
  }
  // Moving on to the next tensor is allowed only once the current one is full.
  if (index != current_) {
    const bool current_full =
        tensors_[current_].defined() &&
        received_bytes_ == meta::NumElements(specs_[current_]) * element_size_;
    if (index != current_ + 1 || !current_full) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk for ", Describe(index), " out of order: expected ",
                       current_full ? Describe(current_ + 1) : Describe(current_)));
    }
    current_ = index;
    received_bytes_ = 0;
  }
  const meta::ParamSpec& spec = specs_[index];
  const std::string what = Describe(index);
  const int64_t expected_total = meta::NumElements(spec) * element_size_;

  if (!chunk.name().empty() && chunk.name() != spec.name) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": name \"", chunk.name(), "\" does not match"));
  }
  const bool first = !tensors_[index].defined();
  if (first && chunk.dtype() == v1::DTYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": first chunk carries no dtype"));
  }
  if (chunk.dtype() != v1::DTYPE_UNSPECIFIED && chunk.dtype() != proto_dtype_) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": dtype ", DTypeName(chunk.dtype()),
                                                   ", expected ", DTypeName(proto_dtype_)));
  }
  // A scalar's shape is empty, indistinguishable from "not given".
  if (first && chunk.shape_size() == 0 && !spec.shape.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": first chunk carries no shape"));
  }
  if (chunk.shape_size() > 0 && !std::equal(chunk.shape().begin(), chunk.shape().end(),
                                            spec.shape.begin(), spec.shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": shape ", ShapeString(chunk.shape()),
                                                   ", expected ", ShapeString(spec.shape)));
  }
  if (chunk.total_bytes() != expected_total) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": total_bytes ", chunk.total_bytes(), ", expected ", expected_total));
  }
  if (chunk.offset() != received_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": offset ", chunk.offset(), ", expected ", received_bytes_));
  }
  const int64_t size = static_cast<int64_t>(chunk.data().size());
  if (size > expected_total - received_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", size, " bytes at offset ",
                                                   chunk.offset(), " run past total_bytes ",
                                                   expected_total));
  }
  if (first) {
    ASSIGN_OR_RETURN(tensors_[index], CatchTorch(what, [&] {
                       return at::empty(spec.shape, at::TensorOptions().dtype(dtype_));
                     }));
  }
  if (size > 0) {
    std::memcpy(static_cast<char*>(tensors_[index].data_ptr()) + received_bytes_,
                chunk.data().data(), static_cast<size_t>(size));
    // The elements this chunk completed, checked while the copy is still in cache (a pass
    // over the whole tensor once it is full read it back from memory: a fifth of the
    // coordinator's time per gradient, docs/benchmarks.md). A chunk may end mid-element;
    // that element is checked with the next chunk.
    const int64_t checked = received_bytes_ / element_size_;
    received_bytes_ += size;
    if (at::isFloatingType(dtype_) &&
        !meta::AllFinite(tensors_[index], checked, received_bytes_ / element_size_)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": non-finite values"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<meta::TensorList> TensorAssembler::Finish() {
  if (!error_.ok()) {
    absl::Status error = error_;
    Reset();
    if (element_size_ == 0) error_ = error;
    return error;
  }
  if (!complete()) {
    int64_t missing = current_;
    const int64_t expected = meta::NumElements(specs_[current_]) * element_size_;
    if (tensors_[current_].defined() && received_bytes_ == expected) ++missing;
    absl::Status status = absl::FailedPreconditionError(
        absl::StrCat("tensor list incomplete: ", Describe(missing), " not fully received"));
    Reset();
    return status;
  }
  meta::TensorList out = std::move(tensors_);
  Reset();
  return out;
}

absl::StatusOr<meta::TensorList> DecodeTensors(const std::vector<v1::TensorChunk>& chunks,
                                               const std::vector<meta::ParamSpec>& specs,
                                               at::ScalarType dtype) {
  TensorAssembler assembler(specs, dtype);
  for (const auto& chunk : chunks) RETURN_IF_ERROR(assembler.Add(chunk));
  return assembler.Finish();
}

}  // namespace metatrain::rpc
