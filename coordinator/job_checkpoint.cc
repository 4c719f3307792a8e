#include "coordinator/job_checkpoint.h"

#include <cstring>
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
    return meta::SerializeStateDict(dict);
  });
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
