#include "common/meta/job_limits.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/meta/job_spec.h"
#include "common/status/status_macros.h"

namespace metatrain::meta {
namespace {

constexpr double kInt64Max = static_cast<double>(std::numeric_limits<int64_t>::max());

// The estimate is computed in doubles and clamped: no product of spec values can wrap.
int64_t Clamp(double value) {
  if (!(value < kInt64Max)) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::max(0.0, value));
}

absl::Status AtMost(const std::string& field, int64_t value, int64_t limit) {
  if (value <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " must be <= ", limit, " (got ", value, ")"));
}

std::string Mib(int64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

struct ModelShape {
  double parameters = 0;   // the model's own
  double activations = 0;  // per example, one forward
  double columns = 0;      // conv: largest im2col buffer per example (transient)
  double widest = 0;       // largest single layer output per example
};

ModelShape ShapeOfModel(const v1::ModelSpec& model, const std::vector<int64_t>& input_shape,
                        int64_t output_size) {
  ModelShape shape;
  double in = 1;
  for (int64_t d : input_shape) in *= static_cast<double>(d);
  const double out = static_cast<double>(output_size);
  shape.activations = in + 2 * out;
  shape.widest = std::max(in, out);
  if (model.kind() == "conv" && input_shape.size() == 3) {
    double channels = static_cast<double>(input_shape[0]);
    int64_t height = input_shape[1], width = input_shape[2];
    const double f = model.filters();
    for (int block = 0; block < 4; ++block) {
      const double hw = static_cast<double>(height) * static_cast<double>(width);
      shape.parameters += f * channels * 9 + 3 * f;
      shape.columns = std::max(shape.columns, channels * 9 * hw);
      // conv, batch norm and ReLU outputs at full size, then the pooled map.
      shape.activations += 3 * f * hw + f * static_cast<double>(height / 2) * (width / 2);
      shape.widest = std::max(shape.widest, f * hw);
      channels = f;
      height /= 2;
      width /= 2;
    }
    const double features = f * static_cast<double>(height) * static_cast<double>(width);
    shape.parameters += out * features + out;
    return shape;
  }
  double width = in;
  const double per_hidden = model.batch_norm() ? 4 : 2;  // linear, (bn: 2 more), ReLU
  for (int64_t h : model.hidden_sizes()) {
    const double hd = static_cast<double>(h);
    shape.parameters += width * hd + hd + (model.batch_norm() ? 2 * hd : 0);
    shape.activations += per_hidden * hd;
    shape.widest = std::max(shape.widest, hd);
    width = hd;
  }
  shape.parameters += width * out + out;
  return shape;
}

}  // namespace

JobLimits JobLimits::Unlimited() {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  JobLimits l;
  for (int64_t* v :
       {&l.max_ways, &l.max_shots, &l.max_query_size, &l.max_image_size, &l.max_input_dim,
        &l.max_hidden_layers, &l.max_hidden_size, &l.max_filters, &l.max_meta_batch_size,
        &l.max_inner_steps, &l.max_steps, &l.max_validation_tasks, &l.max_test_tasks,
        &l.max_patience, &l.max_workers, &l.max_name_bytes, &l.max_path_bytes, &l.max_parameters}) {
    *v = kMax;
  }
  // In MiB, shifted to bytes when compared.
  l.max_task_memory_mb = kMax >> 20;
  l.max_meta_batch_memory_mb = kMax >> 20;
  return l;
}

bool ShapesFromSpec(const v1::JobSpec& spec, std::vector<int64_t>* input_shape,
                    int64_t* output_size) {
  const auto& t = spec.tasks();
  if (IsClassificationFamily(t.family())) {
    // Image folders may hold colour images (3 channels); the others are grey.
    const int64_t channels = t.family() == "image_folder" ? 3 : 1;
    *input_shape = {channels, t.image_size(), t.image_size()};
    *output_size = t.ways();
    return true;
  }
  if (t.family() == "sinusoid") {
    *input_shape = {1};
    *output_size = 1;
    return true;
  }
  if (t.family() == "linear") {
    *input_shape = {t.input_dim()};
    *output_size = 1;
    return true;
  }
  return false;
}

JobMemoryEstimate EstimateJobMemory(const v1::JobSpec& spec,
                                    const std::vector<int64_t>& input_shape, int64_t output_size) {
  const auto& t = spec.tasks();
  const bool classification = output_size > 1 && IsClassificationFamily(t.family());
  const ModelShape model = ShapeOfModel(spec.model(), input_shape, output_size);
  const double bytes = spec.dtype() == "float64" ? 8 : 4;
  double in = 1;
  for (int64_t d : input_shape) in *= static_cast<double>(d);
  const double ways = classification ? t.ways() : 1;
  const double support = ways * t.shots();
  const double query = ways * t.query_size();
  const double p = model.parameters;
  const double a = model.activations;
  const std::string& algorithm = spec.algorithm();
  const bool second_order = algorithm == "maml" || algorithm == "meta_sgd" || algorithm == "anil";
  // Reptile adapts on support and query together.
  const double inner_examples = algorithm == "reptile" ? support + query : support;
  // NOTE [What one task holds]: its episode (inputs and targets); phi0 (P); per live inner
  // step the adapted parameters, their gradient and (second order) the gradient's own
  // graph, about 3P, and the forward's saved activations plus the graph of the gradient,
  // about 2A per example. Second order keeps every step alive until the outer backward;
  // first order keeps one. The query forward saves A per example for the outer backward,
  // whose gradient buffers are transient (a few of the widest layer at a time); the outer
  // backward briefly needs another step's worth. Evaluation adapts the same way but runs
  // the query without a graph. Conv nets add the im2col buffer of their widest layer.
  // docs/security.md ("Limits") gives the measured ratio of this estimate to peak RSS.
  const double episode = (support + query) * (in + 1);
  // inner.recompute keeps one step's graph alive, plus every step's parameters.
  const bool recompute = second_order && spec.inner().recompute();
  const double live = second_order && !recompute ? std::max(1, spec.inner().steps()) : 1;
  const double saved_steps = recompute ? p * spec.inner().steps() : 0;
  const double widest = model.widest;
  const double columns = model.columns * std::max(inner_examples, query);
  const double train = episode + p + saved_steps + live * (3 * p + 2 * a * inner_examples) +
                       a * query + 2 * widest * query + (2 * p + a * inner_examples) + columns;
  const double evaluation = episode + 4 * p + 2 * a * support + 3 * widest * query + columns;
  JobMemoryEstimate estimate;
  estimate.parameters = Clamp(algorithm == "meta_sgd" ? 2 * p : p);
  estimate.activations_per_example = Clamp(a);
  const double task = std::max(train, evaluation) * bytes;
  estimate.task_bytes = Clamp(task);
  // The meta-parameters, their mean gradient and the optimizer's two moments.
  estimate.meta_batch_bytes =
      Clamp(task * spec.meta_batch_size() + 4 * bytes * static_cast<double>(estimate.parameters));
  return estimate;
}

absl::Status CheckJobMemory(const v1::JobSpec& spec, const std::vector<int64_t>& input_shape,
                            int64_t output_size, const JobLimits& limits) {
  const JobMemoryEstimate e = EstimateJobMemory(spec, input_shape, output_size);
  if (e.parameters > limits.max_parameters) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the model has ", e.parameters, " meta-parameters, over the limit max_parameters=",
        limits.max_parameters, " (model.hidden_sizes, model.filters, image size)"));
  }
  const int64_t task_limit = limits.max_task_memory_mb << 20;
  if (e.task_bytes > task_limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the job needs about ", Mib(e.task_bytes),
        " per task, over the limit max_task_memory_mb=", limits.max_task_memory_mb,
        " (the size of one task: tasks.ways, tasks.shots, tasks.query_size, tasks.image_size, "
        "the model, inner.steps)"));
  }
  const int64_t batch_limit = limits.max_meta_batch_memory_mb << 20;
  if (e.meta_batch_bytes > batch_limit) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the job needs about ", Mib(e.meta_batch_bytes),
                     " per meta-batch, over the limit max_meta_batch_memory_mb=",
                     limits.max_meta_batch_memory_mb, " (meta_batch_size ", spec.meta_batch_size(),
                     " x ", Mib(e.task_bytes), " per task)"));
  }
  return absl::OkStatus();
}

absl::Status CheckJobLimits(const v1::JobSpec& spec, const JobLimits& limits) {
  const auto& t = spec.tasks();
  const auto& m = spec.model();
  RETURN_IF_ERROR(
      AtMost("name (bytes)", static_cast<int64_t>(spec.name().size()), limits.max_name_bytes));
  RETURN_IF_ERROR(AtMost("tasks.data_dir (bytes)", static_cast<int64_t>(t.data_dir().size()),
                         limits.max_path_bytes));
  RETURN_IF_ERROR(AtMost("tasks.tensor_file (bytes)", static_cast<int64_t>(t.tensor_file().size()),
                         limits.max_path_bytes));
  RETURN_IF_ERROR(AtMost("initial_weights (bytes)",
                         static_cast<int64_t>(spec.initial_weights().size()),
                         limits.max_path_bytes));
  RETURN_IF_ERROR(
      AtMost("model.hidden_sizes (layers)", m.hidden_sizes_size(), limits.max_hidden_layers));
  for (int i = 0; i < m.hidden_sizes_size(); ++i) {
    RETURN_IF_ERROR(AtMost(absl::StrCat("model.hidden_sizes[", i, "]"), m.hidden_sizes(i),
                           limits.max_hidden_size));
  }
  RETURN_IF_ERROR(AtMost("model.filters", m.filters(), limits.max_filters));
  RETURN_IF_ERROR(AtMost("tasks.ways", t.ways(), limits.max_ways));
  // The options of the algorithms of #16 (zero: their defaults).
  RETURN_IF_ERROR(AtMost("protonet.train_ways", spec.protonet().train_ways(), limits.max_ways));
  RETURN_IF_ERROR(
      AtMost("meta_lstm.hidden_size", spec.meta_lstm().hidden_size(), limits.max_hidden_size));
  RETURN_IF_ERROR(AtMost("tasks.shots", t.shots(), limits.max_shots));
  RETURN_IF_ERROR(AtMost("tasks.query_size", t.query_size(), limits.max_query_size));
  RETURN_IF_ERROR(AtMost("tasks.image_size", t.image_size(), limits.max_image_size));
  if (m.kind() == "conv" && IsClassificationFamily(t.family()) && t.image_size() < 16) {
    // Four 2x2 poolings: a smaller image leaves no features for the head.
    return absl::InvalidArgumentError(absl::StrCat(
        "tasks.image_size must be >= 16 for model.kind 'conv' (got ", t.image_size(), ")"));
  }
  RETURN_IF_ERROR(AtMost("tasks.input_dim", t.input_dim(), limits.max_input_dim));
  RETURN_IF_ERROR(AtMost("meta_batch_size", spec.meta_batch_size(), limits.max_meta_batch_size));
  RETURN_IF_ERROR(AtMost("inner.steps", spec.inner().steps(), limits.max_inner_steps));
  RETURN_IF_ERROR(AtMost("inner.test_steps", spec.inner().test_steps(), limits.max_inner_steps));
  RETURN_IF_ERROR(AtMost("steps", spec.steps(), limits.max_steps));
  RETURN_IF_ERROR(AtMost("validation_interval", spec.validation_interval(), limits.max_steps));
  RETURN_IF_ERROR(AtMost("checkpoint_interval", spec.checkpoint_interval(), limits.max_steps));
  RETURN_IF_ERROR(AtMost("validation_tasks", spec.validation_tasks(), limits.max_validation_tasks));
  RETURN_IF_ERROR(AtMost("test_tasks", spec.test_tasks(), limits.max_test_tasks));
  RETURN_IF_ERROR(
      AtMost("early_stopping_patience", spec.early_stopping_patience(), limits.max_patience));
  RETURN_IF_ERROR(
      AtMost("outer.plateau_patience", spec.outer().plateau_patience(), limits.max_patience));
  RETURN_IF_ERROR(
      AtMost("resources.max_workers", spec.resources().max_workers(), limits.max_workers));
  std::vector<int64_t> input_shape;
  int64_t output_size = 0;
  if (ShapesFromSpec(spec, &input_shape, &output_size)) {
    RETURN_IF_ERROR(CheckJobMemory(spec, input_shape, output_size, limits));
  }
  return absl::OkStatus();
}

}  // namespace metatrain::meta
