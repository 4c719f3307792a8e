#include "common/meta/checkpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

// LibTorch 1.13's torch::pickle_load reads through an adapter that copies whatever range
// the zip reader asks for, unchecked: a truncated or corrupt file makes it read past the
// buffer (AddressSanitizer, `make test-asan`: DamagedResumeTest/truncated). This one
// returns only the bytes that exist; the zip reader then reports a short read.
class BoundedReader final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BoundedReader(const std::string& bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    n = std::min<size_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  const std::string& bytes_;
};

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

absl::StatusOr<StateDict> DeserializeStateDict(const std::string& bytes) {
  // LibTorch's unpickler turns collections.OrderedDict (what nn.Module.state_dict() returns)
  // into None, so such files cannot be read; say what to do instead of failing obscurely.
  // Tensors pickle an (empty) OrderedDict of hooks too; only a top-level one, right after
  // the protocol-2 header, is the unreadable case.
  if (bytes.find(std::string("\x80\x02") + "ccollections\nOrderedDict\n") != std::string::npos) {
    return absl::InvalidArgumentError(
        "file holds an OrderedDict (torch.save(model.state_dict())), which LibTorch cannot "
        "read; save a plain dict instead: torch.save(dict(model.state_dict()), path)");
  }
  // What torch::pickle_load does, over a reader that stays within `bytes`.
  ASSIGN_OR_RETURN(
      c10::IValue value,
      CatchTorch(
          "not a torch.save file",
          [&] {
            caffe2::serialize::PyTorchStreamReader reader(std::make_shared<BoundedReader>(bytes));
            return torch::jit::readArchiveAndTensors(
                "data", /*pickle_prefix=*/"", /*tensor_prefix=*/"",
                /*type_resolver=*/c10::nullopt, /*obj_loader=*/c10::nullopt,
                /*device=*/c10::nullopt, reader);
          },
          absl::StatusCode::kInvalidArgument));
  if (!value.isGenericDict()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a state dict (dict of name -> tensor), got ", value.tagKind()));
  }
  StateDict state;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString()) {
      return absl::InvalidArgumentError(
          absl::StrCat("state dict key is a ", entry.key().tagKind(), ", not a string"));
    }
    const std::string key = entry.key().toStringRef();
    if (!entry.value().isTensor()) {
      return absl::InvalidArgumentError(absl::StrCat("state dict entry '", key, "' is a ",
                                                     entry.value().tagKind(), ", not a tensor"));
    }
    state[key] = entry.value().toTensor();
  }
  return state;
}

absl::Status SaveStateDict(const std::string& path, const StateDict& state) {
  ASSIGN_OR_RETURN(std::string bytes, SerializeStateDict(state));
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<StateDict> LoadStateDict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("cannot open checkpoint", path);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto state = DeserializeStateDict(bytes);
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
    if (!at::isFloatingType(t.scalar_type())) {
      return absl::InvalidArgumentError(absl::StrCat(spec.name, ": checkpoint tensor is ",
                                                     c10::toString(t.scalar_type()),
                                                     ", expected floating point"));
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
