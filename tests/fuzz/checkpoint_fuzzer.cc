// Fuzz target: loading a checkpoint (common/meta/checkpoint.h), as the coordinator does for a
// job's initial_weights and for resume files. DeserializeStateDict is the in-memory form of
// LoadStateDict. The first byte picks the input's form:
//   even: the bytes are the file, as a user would hand it over;
//   odd:  the bytes are the records of the archive, [u8 name length][name][u16 size][data]
//         each (little endian), which the target packs into a valid torch.save zip itself.
//         The archive's CRC-32s would otherwise stop almost every mutation at the zip layer,
//         before the unpickler and our checks see it.
// Properties checked beyond "no crash": every refusal is a status with a message; every
// tensor of an accepted state dict is a dense CPU tensor that lies within its storage (so
// nothing that reads it reads past its memory); FromStateDict returns the specs' shapes.
//
// LibTorch (zip reader, unpickler) is not instrumented: libFuzzer sees coverage of our code
// only, and ASan sees LibTorch's heap misuse only through malloc/free and the string
// functions it intercepts (docs/security.md "Fuzzing and sanitizers").

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "common/meta/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace meta = metatrain::meta;

const std::vector<meta::ParamSpec>& Specs() {
  static const auto* specs = new std::vector<meta::ParamSpec>{
      {"net.0.weight", {2, 1}, false},
      {"net.0.bias", {2}, false},
  };
  return *specs;
}

// Packs the records of `data` into a torch.save archive. Empty when the writer refuses.
std::string PackArchive(const uint8_t* data, size_t size) {
  std::string archive;
  try {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) {
      archive.append(static_cast<const char*>(buf), n);
      return n;
    });
    size_t pos = 0;
    while (pos < size) {
      const size_t name_size = data[pos++];
      if (name_size == 0 || size - pos < name_size + 2) break;
      const std::string name(reinterpret_cast<const char*>(data + pos), name_size);
      pos += name_size;
      const size_t record_size = data[pos] | (static_cast<size_t>(data[pos + 1]) << 8);
      pos += 2;
      if (size - pos < record_size) break;
      writer.writeRecord(name, data + pos, record_size);
      pos += record_size;
    }
    writer.writeEndOfFile();
  } catch (const std::exception&) {
    return "";
  }
  return archive;
}

// Whether every element `t` addresses lies inside its storage.
bool WithinStorage(const at::Tensor& t) {
  if (t.numel() == 0) return true;
  __int128 lowest = t.storage_offset(), highest = t.storage_offset();
  for (int64_t d = 0; d < t.dim(); ++d) {
    const __int128 reach = static_cast<__int128>(t.size(d) - 1) * t.stride(d);
    (reach < 0 ? lowest : highest) += reach;
  }
  return lowest >= 0 && (highest + 1) * static_cast<__int128>(t.element_size()) <=
                            static_cast<__int128>(t.storage().nbytes());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 256 * 1024) return 0;
  const std::string bytes = (data[0] & 1)
                                ? PackArchive(data + 1, size - 1)
                                : std::string(reinterpret_cast<const char*>(data + 1), size - 1);
  auto state = meta::DeserializeStateDict(bytes);
  if (!state.ok()) {
    FUZZ_CHECK(!state.status().message().empty(), "refusal without a message");
    return 0;
  }
  for (const auto& [name, tensor] : *state) {
    FUZZ_CHECK(tensor.defined() && tensor.layout() == at::kStrided && tensor.device().is_cpu() &&
                   tensor.has_storage(),
               name + ": not a dense CPU tensor");
    FUZZ_CHECK(WithinStorage(tensor), name + ": sizes and strides reach past the storage");
  }
  auto params = meta::FromStateDict(Specs(), *state, at::kFloat, /*allow_extra=*/true);
  if (!params.ok()) {
    FUZZ_CHECK(!params.status().message().empty(), "refusal without a message");
    return 0;
  }
  for (size_t i = 0; i < Specs().size(); ++i) {
    const at::Tensor& t = (*params)[i];
    FUZZ_CHECK(t.scalar_type() == at::kFloat && t.sizes() == at::IntArrayRef(Specs()[i].shape) &&
                   t.is_contiguous(),
               Specs()[i].name + ": wrong dtype, shape or layout");
    // Reads every element, in instrumented code.
    (void)meta::AllFinite(t);
  }
  return 0;
}
