#include "common/meta/trainer.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/meta/aggregation.h"
#include "common/meta/checkpoint.h"
#include "common/meta/local_gradient_source.h"
#include "common/meta/rng.h"
#include "common/meta/training_loop.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
absl::StatusOr<JobContext> MakeJobContext(const v1::JobSpec& normalized_spec,
                                          const JobFileLimits& file_limits) {
  JobContext job;
  job.spec = normalized_spec;
  job.file_limits = file_limits;
  job.dtype = normalized_spec.dtype() == "float64" ? at::kDouble : at::kFloat;
  ASSIGN_OR_RETURN(job.family, MakeTaskFamily(normalized_spec, file_limits));
  ASSIGN_OR_RETURN(
      std::unique_ptr<Model> model,
      MakeModel(normalized_spec.model(), job.family->input_shape(), job.family->output_size()));
  job.model = std::move(model);
  ASSIGN_OR_RETURN(job.learner, MakeMetaLearner(normalized_spec, job.model, job.family->loss()));
  return job;
}

std::vector<TaskKey> TrainingKeys(const v1::JobSpec& spec, int64_t step) {
  std::vector<TaskKey> keys;
  keys.reserve(spec.meta_batch_size());
  for (int64_t i = 0; i < spec.meta_batch_size(); ++i) keys.push_back({Split::kTrain, step, i});
  return keys;
}

absl::StatusOr<TensorList> InitialMetaParams(const JobContext& job) {
  Rng rng(MixSeed({job.spec.seed(), 0x696e6974ull /* "init" */}));
  TensorList params = job.learner->InitialMetaParams(rng, job.dtype);
  if (job.spec.initial_weights().empty()) return params;
  const std::string& path = job.spec.initial_weights();
  auto state = LoadStateDict(path, job.file_limits.checkpoint);
  if (!state.ok()) {
    return absl::Status(state.status().code(),
                        absl::StrCat("initial_weights: ", state.status().message()));
  }
  // Algorithm-specific extras (Meta-SGD's "lr.*" rates) may be absent from a plain model's
  // state_dict: they keep their initial values. Everything else must be there.
  const auto& specs = job.learner->meta_param_specs();
  std::vector<ParamSpec> present;
  std::vector<size_t> where;
  for (size_t i = 0; i < specs.size(); ++i) {
    const bool extra = specs[i].name.rfind("lr.", 0) == 0;
    if (!extra || state->count(specs[i].name)) {
      present.push_back(specs[i]);
      where.push_back(i);
    }
  }
  auto loaded = FromStateDict(present, *state, job.dtype, /*allow_extra=*/true);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("initial_weights '", path, "': ", loaded.status().message()));
  }
  for (size_t j = 0; j < where.size(); ++j) params[where[j]] = (*loaded)[j];
  return params;
}

double LinearScheduleLr(const v1::JobSpec& spec, int64_t step) {
  const double frac = static_cast<double>(step) / static_cast<double>(spec.steps());
  return spec.outer().lr() * (1.0 - frac);
}

double SelectionScore(const v1::JobSpec& spec, const EvaluationSummary& validation) {
  return spec.select_best_by() == "accuracy" ? -validation.accuracy_after.mean
                                             : validation.loss_after.mean;
}

absl::StatusOr<TensorList> AggregateGroupGradients(const std::vector<ParamSpec>& specs,
                                                   std::vector<TensorList> group_gradients,
                                                   int64_t num_tasks) {
  TaskOrderAggregator aggregator(specs, static_cast<int64_t>(group_gradients.size()), num_tasks);
  for (size_t g = 0; g < group_gradients.size(); ++g) {
    RETURN_IF_ERROR(aggregator.Add(static_cast<int64_t>(g), std::move(group_gradients[g])));
  }
  return aggregator.Mean();
}

absl::StatusOr<double> ClipAndStep(const v1::JobSpec& spec, TensorList mean,
                                   OuterOptimizer& optimizer, TensorList& meta_params) {
  return CatchTorch("outer update", [&] {
    const double norm = ClipGradNorm(mean, spec.outer().clip_grad_norm());
    optimizer.Step(meta_params, mean);
    return norm;
  });
}

absl::StatusOr<double> ApplyMetaUpdate(const v1::JobSpec& spec, const std::vector<ParamSpec>& specs,
                                       std::vector<TensorList> task_gradients,
                                       OuterOptimizer& optimizer, TensorList& meta_params) {
  const auto num_tasks = static_cast<int64_t>(task_gradients.size());
  ASSIGN_OR_RETURN(
      TensorList mean,
      AggregateGroupGradients(
          specs, SumGroups(std::move(task_gradients), spec.gradient_group_size()), num_tasks));
  return ClipAndStep(spec, std::move(mean), optimizer, meta_params);
}

absl::StatusOr<EvaluationSummary> MetaValidate(const JobContext& job, const TensorList& meta_params,
                                               int64_t step) {
  return EvaluateTasks(*job.learner, *job.family, meta_params, job.spec.seed(), Split::kValidation,
                       step, job.spec.validation_tasks(), job.spec.inner().test_steps(),
                       job.spec.meta_batch_size(), job.dtype);
}

absl::StatusOr<EvaluationSummary> MetaTest(const JobContext& job, const TensorList& meta_params) {
  return EvaluateTasks(*job.learner, *job.family, meta_params, job.spec.seed(), Split::kTest,
                       /*round=*/0, job.spec.test_tasks(), job.spec.inner().test_steps(),
                       job.spec.meta_batch_size(), job.dtype);
}

absl::StatusOr<TrainingResult> Train(const JobContext& job,
                                     const std::function<bool(const StepReport&)>& on_step,
                                     int threads, int64_t task_group_size) {
  class CallbackObserver final : public TrainingObserver {
   public:
    explicit CallbackObserver(const std::function<bool(const StepReport&)>& on_step)
        : on_step_(on_step) {}
    absl::Status OnStep(const StepReport& report) override {
      if (on_step_ && !on_step_(report)) {
        return absl::CancelledError(absl::StrCat("training cancelled after step ", report.step));
      }
      return absl::OkStatus();
    }

   private:
    const std::function<bool(const StepReport&)>& on_step_;
  };
  CallbackObserver observer(on_step);
  LocalGradientSource source(job, threads, task_group_size);
  LoopOptions options;
  options.observer = &observer;
  return RunTrainingLoop(job, source, std::move(options));
}

}  // namespace metatrain::meta
