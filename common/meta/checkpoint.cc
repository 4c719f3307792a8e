#include "common/meta/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files/confined_path.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  const int err = errno;
  const std::string message = absl::StrCat(what, " '", path, "': ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
  return absl::InternalError(message);
}

std::string Shape(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<std::string> SerializeStateDict(const StateDict& state) {
  return CatchTorch("serialising state dict", [&] {
    c10::Dict<std::string, at::Tensor> dict;
    for (const auto& [name, tensor] : state) {
      dict.insert(name, tensor.detach().contiguous().cpu());
    }
    const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
    return std::string(bytes.begin(), bytes.end());
  });
}

absl::StatusOr<StateDict> DeserializeStateDict(const std::string& bytes,
                                               const TorchFileLimits& limits) {
  // LibTorch's unpickler turns collections.OrderedDict (what nn.Module.state_dict() returns)
  // into None, so such files cannot be read; say what to do instead of failing obscurely.
  // Tensors pickle an (empty) OrderedDict of hooks too; only a top-level one, right after
  // the protocol-2 header, is the unreadable case.
  if (bytes.find(std::string("\x80\x02") + "ccollections\nOrderedDict\n") != std::string::npos) {
    return absl::InvalidArgumentError(
        "file holds an OrderedDict (torch.save(model.state_dict())), which LibTorch cannot "
        "read; save a plain dict instead: torch.save(dict(model.state_dict()), path)");
  }
  // Checkpoints hold parameters and optimizer state (floating point), step counters
  // (int64) and serialised protos (uint8); nothing else.
  return ParseTorchTensorDict(bytes, {at::kFloat, at::kDouble, at::kLong, at::kByte}, limits);
}

absl::Status SaveStateDict(const std::string& path, const StateDict& state) {
  ASSIGN_OR_RETURN(std::string bytes, SerializeStateDict(state));
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<StateDict> LoadStateDict(const std::string& path, const TorchFileLimits& limits) {
  ASSIGN_OR_RETURN(
      std::string bytes,
      files::ReadFileBounded("checkpoint", path, limits.max_file_bytes, "max_checkpoint_mb"));
  auto state = DeserializeStateDict(bytes, limits);
  if (!state.ok()) {
    return absl::Status(state.status().code(), absl::StrCat(path, ": ", state.status().message()));
  }
  return state;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& bytes) {
  const auto slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string tmp = absl::StrCat(path, ".tmp.XXXXXX");
  const int fd = mkstemp(tmp.data());
  if (fd < 0) return ErrnoError("cannot create temporary file in", dir);
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status s = ErrnoError("cannot write", tmp);
      close(fd);
      unlink(tmp.c_str());
      return s;
    }
    written += static_cast<size_t>(n);
  }
  if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
    absl::Status s = ErrnoError("cannot sync", tmp);
    close(fd);
    unlink(tmp.c_str());
    return s;
  }
  if (close(fd) != 0) {
    absl::Status s = ErrnoError("cannot close", tmp);
    unlink(tmp.c_str());
    return s;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = ErrnoError("cannot rename temporary file to", path);
    unlink(tmp.c_str());
    return s;
  }
  // Make the rename itself durable.
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

StateDict ToStateDict(const std::vector<ParamSpec>& specs, const TensorList& params) {
  StateDict state;
  for (size_t i = 0; i < specs.size() && i < params.size(); ++i) {
    state[specs[i].name] = params[i].detach().clone();
  }
  return state;
}

absl::StatusOr<TensorList> FromStateDict(const std::vector<ParamSpec>& specs,
                                         const StateDict& state, at::ScalarType dtype,
                                         bool allow_extra) {
  TensorList params;
  params.reserve(specs.size());
  for (const auto& spec : specs) {
    auto it = state.find(spec.name);
    if (it == state.end()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint has no '", spec.name,
                                                     "' (model needs ", Shape(spec.shape), ")"));
    }
    const at::Tensor& t = it->second;
    if (t.sizes() != at::IntArrayRef(spec.shape)) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec.name, ": checkpoint has ", Shape(t.sizes()), ", model needs ", Shape(spec.shape)));
    }
    if (t.scalar_type() != at::kFloat && t.scalar_type() != at::kDouble) {
      return absl::InvalidArgumentError(absl::StrCat(spec.name, ": checkpoint tensor is ",
                                                     c10::toString(t.scalar_type()),
                                                     ", expected float32 or float64"));
    }
    // Parameters feed every later step: one NaN or Inf would poison the whole run.
    if (!at::isfinite(t).all().item<bool>()) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.name, ": checkpoint holds values that are not finite (NaN or Inf)"));
    }
    params.push_back(t.detach().to(dtype).contiguous().clone());
  }
  if (!allow_extra) {
    for (const auto& [name, tensor] : state) {
      bool known = false;
      for (const auto& spec : specs) known = known || spec.name == name;
      if (!known) {
        return absl::InvalidArgumentError(absl::StrCat("checkpoint has unexpected entry '", name,
                                                       "' ", Shape(tensor.sizes()),
                                                       " that the model does not have"));
      }
    }
  }
  return params;
}

}  // namespace metatrain::meta
