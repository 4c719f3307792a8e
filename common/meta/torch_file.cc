#include "common/meta/torch_file.h"

#include <torch/serialize.h>
#include <zip.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace {

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("not a torch.save file: ", what));
}

// The records torch.save (Python, any version since 1.6) and LibTorch's pickle_save write
// under the archive's one top-level folder.
bool KnownRecord(absl::string_view rest) {
  static const char* const kNames[] = {"data.pkl",
                                       "version",
                                       ".data/version",
                                       "byteorder",
                                       ".format_version",
                                       ".storage_alignment",
                                       ".data/serialization_id"};
  for (const char* name : kNames) {
    if (rest == name) return true;
  }
  if (absl::ConsumePrefix(&rest, "data/")) {
    return !rest.empty() && rest.size() <= 20 &&
           std::all_of(rest.begin(), rest.end(), [](char c) { return absl::ascii_isdigit(c); });
  }
  return false;
}

std::string DtypeNames(const std::vector<at::ScalarType>& dtypes) {
  std::vector<std::string> names;
  for (at::ScalarType t : dtypes) names.push_back(c10::toString(t));
  return absl::StrJoin(names, ", ");
}

}  // namespace

absl::Status CheckTorchArchive(absl::string_view bytes, const TorchFileLimits& limits) {
  if (static_cast<int64_t>(bytes.size()) > limits.max_file_bytes) {
    return Bad(absl::StrCat(bytes.size(), " bytes, over the limit of ", limits.max_file_bytes));
  }
  if (bytes.size() < 22 || !absl::StartsWith(bytes, "PK\x03\x04")) {
    return Bad("not a zip archive (torch.save's format since PyTorch 1.6)");
  }
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (source == nullptr) {
    zip_error_fini(&error);
    return absl::ResourceExhaustedError("cannot read the archive (out of memory)");
  }
  zip_t* archive = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (archive == nullptr) {
    absl::Status status =
        Bad(absl::StrCat("unreadable zip archive (", zip_error_strerror(&error), ")"));
    zip_source_free(source);
    zip_error_fini(&error);
    return status;
  }
  zip_error_fini(&error);
  absl::Status status = [&]() -> absl::Status {
    const zip_int64_t n = zip_get_num_entries(archive, 0);
    if (n <= 0) return Bad("empty archive");
    if (n > limits.max_entries) {
      return Bad(absl::StrCat(n, " records, over the limit of ", limits.max_entries));
    }
    std::string prefix;
    std::set<std::string> names;
    uint64_t total = 0;
    bool has_pickle = false, has_version = false;
    for (zip_int64_t i = 0; i < n; ++i) {
      zip_stat_t st;
      zip_stat_init(&st);
      if (zip_stat_index(archive, i, 0, &st) != 0 || (st.valid & ZIP_STAT_NAME) == 0 ||
          (st.valid & ZIP_STAT_SIZE) == 0 || (st.valid & ZIP_STAT_COMP_SIZE) == 0 ||
          (st.valid & ZIP_STAT_COMP_METHOD) == 0) {
        return Bad(absl::StrCat("unreadable directory entry ", i));
      }
      const std::string name = st.name;
      const auto slash = name.find('/');
      if (slash == std::string::npos || slash == 0) {
        return Bad(absl::StrCat("record '", name, "' is not inside the archive's folder"));
      }
      if (prefix.empty()) prefix = name.substr(0, slash + 1);
      if (name.compare(0, prefix.size(), prefix) != 0) {
        return Bad(absl::StrCat("records in two folders ('", prefix, "', '", name, "')"));
      }
      const std::string rest = name.substr(prefix.size());
      if (!KnownRecord(rest)) return Bad(absl::StrCat("unexpected record '", name, "'"));
      if (!names.insert(name).second) return Bad(absl::StrCat("record '", name, "' twice"));
      // torch.save stores records uncompressed, so none can be larger than the file: a
      // compressed one could unpack to anything.
      if (st.comp_method != ZIP_CM_STORE || st.size != st.comp_size) {
        return Bad(absl::StrCat("record '", name, "' is compressed"));
      }
      if (st.size > bytes.size()) {
        return Bad(absl::StrCat("record '", name, "' claims ", st.size, " bytes in a file of ",
                                bytes.size()));
      }
      total += st.size;
      if (total > bytes.size()) return Bad("records add up to more than the file");
      if (rest == "data.pkl") {
        has_pickle = true;
        if (static_cast<int64_t>(st.size) > limits.max_pickle_bytes) {
          return Bad(absl::StrCat("data.pkl has ", st.size, " bytes, over the limit of ",
                                  limits.max_pickle_bytes));
        }
      }
      has_version = has_version || rest == "version" || rest == ".data/version";
    }
    if (!has_pickle) return Bad("no data.pkl record");
    if (!has_version) return Bad("no version record");
    return absl::OkStatus();
  }();
  zip_discard(archive);
  return status;
}

absl::Status CheckLoadedTensor(const std::string& name, const at::Tensor& t,
                               const std::vector<at::ScalarType>& dtypes,
                               const TorchFileLimits& limits) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "': ", what));
  };
  if (!t.defined()) return bad("undefined tensor");
  if (t.layout() != at::kStrided || t.is_quantized() || !t.device().is_cpu() || !t.has_storage()) {
    return bad("not a dense CPU tensor");
  }
  if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end()) {
    return bad(absl::StrCat("dtype ", c10::toString(t.scalar_type()), " (expected ",
                            DtypeNames(dtypes), ")"));
  }
  // The unpickler takes sizes, strides and offset from the pickle and the storage's size
  // from the record, without comparing them: a view reaching past its storage would read
  // out of bounds. Checked in 128-bit arithmetic, before anything touches the data.
  __int128 elements = 1;
  __int128 last = t.storage_offset();  // index of the view's last element
  if (t.storage_offset() < 0) return bad("negative storage offset");
  for (int64_t d = 0; d < t.dim(); ++d) {
    const int64_t size = t.size(d), stride = t.stride(d);
    if (size < 0 || stride < 0) return bad("negative size or stride");
    elements *= size;
    if (elements > limits.max_tensor_elements) {
      return bad(absl::StrCat("more than ", limits.max_tensor_elements, " elements"));
    }
    if (size > 0) last += static_cast<__int128>(size - 1) * stride;
  }
  if (elements > 0) {
    const __int128 needed = (last + 1) * static_cast<__int128>(t.element_size());
    if (needed > static_cast<__int128>(t.storage().nbytes())) {
      return bad(absl::StrCat("shape [", absl::StrJoin(t.sizes(), ", "), "] needs more than the ",
                              t.storage().nbytes(), " bytes stored for it"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, at::Tensor>> ParseTorchTensorDict(
    const std::string& bytes, const std::vector<at::ScalarType>& dtypes,
    const TorchFileLimits& limits) {
  RETURN_IF_ERROR(CheckTorchArchive(bytes, limits));
  const std::vector<char> data(bytes.begin(), bytes.end());
  ASSIGN_OR_RETURN(c10::IValue value,
                   CatchTorch(
                       "not a torch.save file", [&] { return torch::pickle_load(data); },
                       absl::StatusCode::kInvalidArgument));
  if (!value.isGenericDict()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a dict of tensors (name -> tensor), got ", value.tagKind()));
  }
  const c10::Dict<c10::IValue, c10::IValue> dict = value.toGenericDict();
  if (static_cast<int64_t>(dict.size()) > limits.max_tensors) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the dict has ", dict.size(), " entries, over the limit of ", limits.max_tensors));
  }
  std::map<std::string, at::Tensor> out;
  for (const auto& entry : dict) {
    if (!entry.key().isString()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dict key is a ", entry.key().tagKind(), ", not a string"));
    }
    const std::string key = entry.key().toStringRef();
    if (!entry.value().isTensor()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dict entry '", key, "' is a ", entry.value().tagKind(), ", not a tensor"));
    }
    const at::Tensor t = entry.value().toTensor();
    RETURN_IF_ERROR(CheckLoadedTensor(key, t, dtypes, limits));
    out[key] = t;
  }
  return out;
}

}  // namespace metatrain::meta
