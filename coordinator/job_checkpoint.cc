#include "coordinator/job_checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/job_spec.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::coordinator {
namespace {

at::Tensor BytesTensor(const std::string& bytes) {
  at::Tensor t = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

absl::StatusOr<std::string> TensorBytes(const meta::StateDict& dict, const std::string& key) {
  auto it = dict.find(key);
  if (it == dict.end()) {
    return absl::InvalidArgumentError(absl::StrCat("resume checkpoint lacks '", key, "'"));
  }
  at::Tensor t = it->second.contiguous();
  if (t.scalar_type() != at::kByte || t.dim() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("resume checkpoint '", key, "' is not bytes"));
  }
  return std::string(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()));
}

// CatchTorch wraps a StatusOr-returning body once more; flatten it.
template <typename T, typename Fn>
absl::StatusOr<T> Guarded(absl::string_view context, Fn&& fn) {
  auto result = CatchTorch(context, std::forward<Fn>(fn));
  if (!result.ok()) return result.status();
  return *std::move(result);
}

meta::StateDict Prefixed(const std::string& prefix, const meta::StateDict& dict) {
  meta::StateDict out;
  for (const auto& [key, value] : dict) {
    if (key.rfind(prefix, 0) == 0) out[key.substr(prefix.size())] = value;
  }
  return out;
}

constexpr char kChecksumKey[] = "checksum";

// CRC-32 of every entry but the checksum itself, in key order: names, dtypes, shapes and
// raw bytes. torch.save's own format does not check its data (a flipped bit in a tensor
// loads silently), so resume.pt carries this.
int64_t DictChecksum(const meta::StateDict& dict) {
  uLong crc = crc32(0L, Z_NULL, 0);
  auto add = [&crc](const void* data, size_t size) {
    const auto* bytes = static_cast<const Bytef*>(data);
    while (size > 0) {
      const uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
      crc = crc32(crc, bytes, chunk);
      bytes += chunk;
      size -= chunk;
    }
  };
  for (const auto& [key, value] : dict) {
    if (key == kChecksumKey) continue;
    add(key.data(), key.size());
    const at::Tensor t = value.contiguous().cpu();
    const int8_t dtype = static_cast<int8_t>(t.scalar_type());
    add(&dtype, sizeof(dtype));
    for (int64_t size : t.sizes()) add(&size, sizeof(size));
    add(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  }
  return static_cast<int64_t>(crc);
}

}  // namespace

absl::StatusOr<std::string> SerializeResumeState(const ResumeState& state,
                                                 const std::vector<meta::ParamSpec>& specs) {
  return Guarded<std::string>("resume checkpoint", [&]() -> absl::StatusOr<std::string> {
    meta::StateDict dict;
    for (const auto& [key, value] : meta::ToStateDict(specs, state.params)) {
      dict["params." + key] = value;
    }
    if (!state.best_params.empty()) {
      for (const auto& [key, value] : meta::ToStateDict(specs, state.best_params)) {
        dict["best." + key] = value;
      }
    }
    for (const auto& [key, value] : state.optimizer_state) dict["optimizer." + key] = value;
    dict["step"] = at::scalar_tensor(state.step, at::kLong);
    dict["validation_losses"] =
        at::tensor(at::ArrayRef<double>(state.validation_losses), at::kDouble).clone();
    dict["status"] = BytesTensor(state.status.SerializeAsString());
    dict["spec_json"] = BytesTensor(meta::JobSpecToJson(state.status.spec()));
    dict[kChecksumKey] = at::scalar_tensor(DictChecksum(dict), at::kLong);
    return meta::SerializeStateDict(dict);
  });
}

absl::Status VerifyResumeChecksum(const meta::StateDict& dict) {
  return Guarded<bool>(
             "resume checkpoint",
             [&]() -> absl::StatusOr<bool> {
               auto it = dict.find(kChecksumKey);
               if (it == dict.end()) return true;  // written before checksums existed
               if (it->second.item<int64_t>() != DictChecksum(dict)) {
                 return absl::DataLossError("resume checkpoint fails its checksum (corrupt)");
               }
               return true;
             })
      .status();
}

absl::StatusOr<LoadedResume> LoadResumeDict(const std::string& job_dir,
                                            const meta::TorchFileLimits& limits) {
  namespace fs = std::filesystem;
  std::string why;
  for (const char* file : {kResumeFile, kPreviousResumeFile}) {
    const std::string path = (fs::path(job_dir) / file).string();
    if (!fs::exists(path)) continue;
    absl::StatusOr<meta::StateDict> dict = meta::LoadStateDict(path, limits);
    absl::Status valid = dict.ok() ? VerifyResumeChecksum(*dict) : dict.status();
    if (valid.ok()) valid = ResumeStatusFromDict(*dict).status();
    if (valid.ok()) return LoadedResume{*std::move(dict), file, why};
    absl::StrAppend(&why, why.empty() ? "" : "; ", file, ": ", valid.message());
  }
  return absl::DataLossError(why.empty() ? absl::StrCat("no ", kResumeFile, " in ", job_dir) : why);
}

bool HasResumeFile(const std::string& job_dir) {
  namespace fs = std::filesystem;
  return fs::exists(fs::path(job_dir) / kResumeFile) ||
         fs::exists(fs::path(job_dir) / kPreviousResumeFile);
}

absl::StatusOr<v1::JobStatus> ResumeStatusFromDict(const meta::StateDict& dict) {
  ASSIGN_OR_RETURN(std::string bytes, TensorBytes(dict, "status"));
  v1::JobStatus status;
  if (!status.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("resume checkpoint 'status' is not a JobStatus");
  }
  return status;
}

absl::StatusOr<ResumeState> ResumeStateFromDict(const meta::StateDict& dict,
                                                const std::vector<meta::ParamSpec>& specs,
                                                at::ScalarType dtype) {
  ResumeState state;
  ASSIGN_OR_RETURN(state.status, ResumeStatusFromDict(dict));
  return Guarded<ResumeState>("resume checkpoint", [&]() -> absl::StatusOr<ResumeState> {
    auto step = dict.find("step");
    auto losses = dict.find("validation_losses");
    if (step == dict.end() || losses == dict.end()) {
      return absl::InvalidArgumentError("resume checkpoint lacks 'step' or 'validation_losses'");
    }
    state.step = step->second.item<int64_t>();
    at::Tensor l = losses->second.to(at::kDouble).contiguous();
    state.validation_losses.assign(l.data_ptr<double>(), l.data_ptr<double>() + l.numel());
    ASSIGN_OR_RETURN(state.params, meta::FromStateDict(specs, Prefixed("params.", dict), dtype));
    const meta::StateDict best = Prefixed("best.", dict);
    if (!best.empty()) {
      ASSIGN_OR_RETURN(state.best_params, meta::FromStateDict(specs, best, dtype));
    }
    state.optimizer_state = Prefixed("optimizer.", dict);
    return state;
  });
}

}  // namespace metatrain::coordinator
