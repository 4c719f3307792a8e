// Tasks read from a file written by Python: torch.save({"support_x": ..., "support_y": ...,
// "query_x": ..., "query_y": ...}), the leading dimension indexing tasks.

#include <torch/serialize.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files/confined_path.h"
#include "common/meta/rng.h"
#include "common/meta/task_family_impl.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace {

std::string ShapeString(const at::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

class TensorFileTasks : public TaskFamily {
 public:
  TensorFileTasks(at::Tensor sx, at::Tensor sy, at::Tensor qx, at::Tensor qy, LossKind loss,
                  int64_t output_size, const v1::JobSpec& spec)
      : sx_(std::move(sx)),
        sy_(std::move(sy)),
        qx_(std::move(qx)),
        qy_(std::move(qy)),
        loss_(loss),
        output_size_(output_size),
        seed_(spec.seed()),
        meta_batch_(spec.meta_batch_size()),
        file_order_(spec.tasks().file_order()) {}

  std::vector<int64_t> input_shape() const override {
    return std::vector<int64_t>(sx_.sizes().begin() + 2, sx_.sizes().end());
  }
  int64_t output_size() const override { return output_size_; }
  LossKind loss() const override { return loss_; }

  absl::StatusOr<TaskBatch> Sample(absl::Span<const TaskKey> keys,
                                   at::ScalarType dtype) const override {
    const int64_t n = sx_.size(0);
    std::vector<int64_t> rows;
    rows.reserve(keys.size());
    for (const TaskKey& key : keys) {
      if (file_order_) {
        // Evaluation rounds use their own offsets so they do not replay training tasks in
        // lock-step; within a split, tasks are taken in file order.
        const int64_t base = key.step * meta_batch_ + key.index;
        const int64_t offset = static_cast<int64_t>(key.split) * 7919;
        rows.push_back(((base + offset) % n + n) % n);
      } else {
        Rng rng(TaskSeed(seed_, key));
        rows.push_back(static_cast<int64_t>(rng.UniformInt(n)));
      }
    }
    const at::Tensor index = at::tensor(rows, at::TensorOptions().dtype(at::kLong));
    const bool classification = loss_ == LossKind::kCrossEntropy;
    TaskBatch batch;
    batch.support_x = sx_.index_select(0, index).to(dtype);
    batch.query_x = qx_.index_select(0, index).to(dtype);
    batch.support_y = sy_.index_select(0, index);
    batch.query_y = qy_.index_select(0, index);
    if (!classification) {
      batch.support_y = batch.support_y.to(dtype);
      batch.query_y = batch.query_y.to(dtype);
    }
    return batch;
  }

 private:
  at::Tensor sx_, sy_, qx_, qy_;
  LossKind loss_;
  int64_t output_size_;
  uint64_t seed_;
  int64_t meta_batch_;
  bool file_order_;
};

// The most classes a tensor file's labels may name: the head's width comes from them.
constexpr int64_t kMaxTensorFileClasses = 1 << 16;

}  // namespace

absl::StatusOr<std::unique_ptr<TaskFamily>> MakeTensorFileTasks(const v1::JobSpec& spec,
                                                                const TorchFileLimits& limits) {
  const std::string& path = spec.tasks().tensor_file();
  auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("tasks.tensor_file '", path, "': ", what));
  };
  ASSIGN_OR_RETURN(std::string bytes,
                   files::ReadFileBounded("tasks.tensor_file", path, limits.max_file_bytes,
                                          "max_tensor_file_mb"));
  // NOTE [Untrusted torch files] in torch_file.h.
  auto parsed = ParseTorchTensorDict(bytes, {at::kFloat, at::kDouble, at::kLong}, limits);
  if (!parsed.ok()) return fail(std::string(parsed.status().message()));
  std::map<std::string, at::Tensor> tensors;
  for (const char* key : {"support_x", "support_y", "query_x", "query_y"}) {
    auto it = parsed->find(key);
    if (it == parsed->end()) {
      return fail(
          absl::StrCat("missing key '", key, "' (need support_x, support_y, query_x, query_y)"));
    }
    tensors[key] = it->second.contiguous();
  }
  const at::Tensor& sx = tensors["support_x"];
  const at::Tensor& sy = tensors["support_y"];
  const at::Tensor& qx = tensors["query_x"];
  const at::Tensor& qy = tensors["query_y"];
  for (const char* key : {"support_x", "query_x"}) {
    const at::Tensor& x = tensors[key];
    if (!at::isFloatingType(x.scalar_type())) {
      return fail(absl::StrCat("'", key, "' must be a floating-point tensor (got ",
                               c10::toString(x.scalar_type()), ")"));
    }
    if (x.dim() < 3) {
      return fail(absl::StrCat("'", key, "' must have shape [tasks, examples, features...] (got ",
                               ShapeString(x), ")"));
    }
  }
  const int64_t n = sx.size(0);
  if (n == 0) return fail("the file holds no tasks");
  if (sx.sizes().slice(2) != qx.sizes().slice(2)) {
    return fail(absl::StrCat("support_x ", ShapeString(sx), " and query_x ", ShapeString(qx),
                             " have different example shapes"));
  }
  const bool classification = sy.scalar_type() == at::kLong;
  if (classification != (qy.scalar_type() == at::kLong)) {
    return fail(absl::StrCat("support_y (", c10::toString(sy.scalar_type()), ") and query_y (",
                             c10::toString(qy.scalar_type()),
                             ") must both be int64 or both float"));
  }
  if (!classification && !at::isFloatingType(sy.scalar_type())) {
    return fail(
        absl::StrCat("support_y must be int64 (classification) or floating point "
                     "(regression), got ",
                     c10::toString(sy.scalar_type())));
  }
  const int64_t y_dim = classification ? 2 : 3;
  for (auto [key, x, y] : {std::tuple{"support", sx, sy}, std::tuple{"query", qx, qy}}) {
    if (y.dim() != y_dim || y.size(0) != x.size(0) || y.size(1) != x.size(1) || x.size(0) != n) {
      return fail(absl::StrCat(
          key, "_y has shape ", ShapeString(y), " but ", key, "_x has ", ShapeString(x),
          "; expected ",
          classification ? "[tasks, examples] (int64 labels)" : "[tasks, examples, outputs]",
          " with the same tasks and examples (", n, " tasks in support_x)"));
    }
  }
  int64_t output_size;
  if (classification) {
    const int64_t lo = std::min(sy.min().item<int64_t>(), qy.min().item<int64_t>());
    if (lo < 0) return fail(absl::StrCat("labels must be >= 0 (found ", lo, ")"));
    const int64_t hi = std::max(sy.max().item<int64_t>(), qy.max().item<int64_t>());
    if (hi >= kMaxTensorFileClasses) {
      return fail(absl::StrCat("labels must be < ", kMaxTensorFileClasses, " (found ", hi, ")"));
    }
    output_size = hi + 1;
  } else {
    output_size = sy.size(2);
    if (qy.size(2) != output_size) {
      return fail(
          absl::StrCat("support_y has ", output_size, " outputs but query_y has ", qy.size(2)));
    }
  }
  return std::unique_ptr<TaskFamily>(std::make_unique<TensorFileTasks>(
      sx, sy, qx, qy, classification ? LossKind::kCrossEntropy : LossKind::kMse, output_size,
      spec));
}

}  // namespace metatrain::meta
