#ifndef METATRAIN_COMMON_META_TORCH_FILE_H_
#define METATRAIN_COMMON_META_TORCH_FILE_H_

// Reading torch.save files that come from users (initial weights, tensor files, checkpoints
// handed to metactl evaluate) without trusting them. NOTE [Untrusted torch files]:
// LibTorch's zip reader and unpickler were not written for hostile input, so the bytes are
// checked before LibTorch sees them (size; a zip archive laid out as torch.save writes it:
// one top-level folder holding data.pkl, version and data/N records, stored uncompressed,
// no record larger than the file, sane counts, data.pkl's values nested at most 64 deep:
// NOTE [Pickle depth] in torch_file.cc), every LibTorch exception becomes a status,
// and what LibTorch returns is checked again (a dict of tensors of the expected dtypes,
// each tensor's view inside its storage, element counts within limits) before anything
// reads a tensor's data. docs/security.md, "Untrusted files".
//
// Pure functions of their arguments: easy to call from a fuzz target. Thread-safe.

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace metatrain::meta {

struct TorchFileLimits {
  int64_t max_file_bytes = int64_t{1} << 30;  // 1 GiB
  int64_t max_entries = 100000;               // records in the archive
  int64_t max_pickle_bytes = 16 << 20;        // data.pkl
  int64_t max_tensors = 10000;                // entries of the dict
  int64_t max_tensor_elements = int64_t{1} << 28;
};

// The limits of the files a job reads: its initial weights (a checkpoint) and its tensor
// file (a data set, so larger by default).
struct JobFileLimits {
  TorchFileLimits checkpoint;
  TorchFileLimits tensor_file = TensorFileDefaults();
  static TorchFileLimits TensorFileDefaults() {
    TorchFileLimits l;
    l.max_file_bytes = int64_t{4} << 30;
    l.max_tensor_elements = int64_t{1} << 31;
    return l;
  }
};

// The layout check, before LibTorch parses anything. INVALID_ARGUMENT saying what is
// wrong ("not a torch.save file: not a zip archive", "... record 'archive/data/0' is
// compressed", ...).
absl::Status CheckTorchArchive(absl::string_view bytes, const TorchFileLimits& limits);

// The check after parsing, for one tensor named `name`: dtype one of `dtypes`, a view that
// lies inside its storage, at most max_tensor_elements elements. INVALID_ARGUMENT naming it.
absl::Status CheckLoadedTensor(const std::string& name, const at::Tensor& tensor,
                               const std::vector<at::ScalarType>& dtypes,
                               const TorchFileLimits& limits);

// CheckTorchArchive, LibTorch's unpickler (its exceptions as INVALID_ARGUMENT), and a
// top-level dict of string -> tensor whose tensors pass CheckLoadedTensor. For a dict with
// other keys or values the message names the entry.
absl::StatusOr<std::map<std::string, at::Tensor>> ParseTorchTensorDict(
    const std::string& bytes, const std::vector<at::ScalarType>& dtypes,
    const TorchFileLimits& limits);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_TORCH_FILE_H_
