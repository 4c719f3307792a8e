#ifndef METATRAIN_COMMON_META_CHECKPOINT_H_
#define METATRAIN_COMMON_META_CHECKPOINT_H_

// Checkpoints are a PyTorch state_dict: a dict of name -> tensor in the zip/pickle format
// of torch.save, so `torch.load(path)` in Python returns it and `model.load_state_dict`
// accepts it. Files are written atomically (temporary file, fsync, rename).

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/params.h"
#include "common/meta/torch_file.h"

namespace metatrain::meta {

using StateDict = std::map<std::string, at::Tensor>;

// Serialises to / from torch.save's byte format (for files and for the wire).
// Deserialising treats the bytes as untrusted (torch_file.h): INVALID_ARGUMENT for
// anything but a torch.save zip of a dict of float32/float64/int64/uint8 tensors within
// `limits`; never an exception.
absl::StatusOr<std::string> SerializeStateDict(const StateDict& state);
absl::StatusOr<StateDict> DeserializeStateDict(const std::string& bytes,
                                               const TorchFileLimits& limits = {});

absl::Status SaveStateDict(const std::string& path, const StateDict& state);
// Reads at most limits.max_file_bytes (INVALID_ARGUMENT above that, NOT_FOUND for a
// missing file), then DeserializeStateDict.
absl::StatusOr<StateDict> LoadStateDict(const std::string& path,
                                        const TorchFileLimits& limits = {});

// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
absl::Status WriteFileAtomically(const std::string& path, const std::string& bytes);

StateDict ToStateDict(const std::vector<ParamSpec>& specs, const TensorList& params);
// Picks `specs` out of `state` in order, converting to `dtype`. INVALID_ARGUMENT naming the
// missing key, the mismatched shape ("net.0.weight: checkpoint has [40, 1], model needs
// [40, 2]"), a dtype other than float32/float64, or values that are not finite. Extra keys
// are ignored only if `allow_extra`.
absl::StatusOr<TensorList> FromStateDict(const std::vector<ParamSpec>& specs,
                                         const StateDict& state, at::ScalarType dtype,
                                         bool allow_extra = false);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_CHECKPOINT_H_
