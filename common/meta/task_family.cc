#include "common/meta/task_family.h"

#include "absl/strings/str_cat.h"
#include "common/data/image_dataset.h"
#include "common/meta/rng.h"
#include "common/meta/task_family_impl.h"
#include "common/status/status_macros.h"

namespace metatrain::meta {

uint64_t TaskSeed(uint64_t job_seed, const TaskKey& key) {
  return MixSeed({job_seed, 0x7461736bull /* "task" */, static_cast<uint64_t>(key.split),
                  static_cast<uint64_t>(key.step), static_cast<uint64_t>(key.index)});
}

absl::StatusOr<std::unique_ptr<TaskFamily>> MakeTaskFamily(const v1::JobSpec& spec,
                                                           const JobFileLimits& limits) {
  const auto& family = spec.tasks().family();
  if (family == "sinusoid") return MakeSinusoidTasks(spec.tasks(), spec.seed());
  if (family == "linear") return MakeLinearTasks(spec.tasks(), spec.seed());
  if (family == "tensor_file") return MakeTensorFileTasks(spec, limits.tensor_file);
  if (family == "synthetic_images") {
    return MakeImageClassificationTasks(MakeSyntheticImageDataset(spec.tasks(), spec.seed()),
                                        spec.tasks(), spec.seed(), spec.protonet().train_ways());
  }
  if (family == "omniglot" || family == "fashion_mnist" || family == "image_folder") {
    ASSIGN_OR_RETURN(data::FewShotDataset dataset,
                     data::LoadFewShotDataset(spec.tasks(), spec.seed()));
    // protonet.train_ways is 0 unless the algorithm takes it (NormalizeJobSpec).
    return MakeImageClassificationTasks(std::move(dataset), spec.tasks(), spec.seed(),
                                        spec.protonet().train_ways());
  }
  return absl::InvalidArgumentError(absl::StrCat("tasks.family: unknown '", family, "'"));
}

TaskBatch ConcatTaskBatches(const std::vector<TaskBatch>& batches) {
  std::vector<at::Tensor> sx, sy, qx, qy;
  for (const auto& b : batches) {
    if (b.size() == 0) continue;
    sx.push_back(b.support_x);
    sy.push_back(b.support_y);
    qx.push_back(b.query_x);
    qy.push_back(b.query_y);
  }
  TaskBatch out;
  if (sx.empty()) return out;
  out.support_x = at::cat(sx, 0);
  out.support_y = at::cat(sy, 0);
  out.query_x = at::cat(qx, 0);
  out.query_y = at::cat(qy, 0);
  return out;
}

}  // namespace metatrain::meta
