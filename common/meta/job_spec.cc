#include "common/meta/job_spec.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/meta/algorithm_catalog.h"
#include "common/status/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace metatrain::meta {
namespace {

constexpr const char* kFamilies[] = {"sinusoid",   "linear",        "synthetic_images",
                                     "omniglot",   "fashion_mnist", "image_folder",
                                     "tensor_file"};

template <size_t N>
bool OneOf(const std::string& value, const char* const (&options)[N]) {
  for (const char* o : options) {
    if (value == o) return true;
  }
  return false;
}

template <size_t N>
absl::Status CheckOneOf(const std::string& field, const std::string& value,
                        const char* const (&options)[N]) {
  if (OneOf(value, options)) return absl::OkStatus();
  std::vector<std::string> names(std::begin(options), std::end(options));
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown '", value, "' (expected one of ",
                                                 absl::StrJoin(names, ", "), ")"));
}

template <typename T>
absl::Status Positive(const std::string& field, T value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, " must be > 0 (got ", value, ")"));
}

template <typename T>
absl::Status NonNegative(const std::string& field, T value) {
  if (value >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, " must be >= 0 (got ", value, ")"));
}

// Text format takes any bytes in a string ("\223" escapes), but a proto3 string must be
// UTF-8: the coordinator's gRPC parser would refuse the SubmitJob carrying it, and the JSON
// form (checkpoints, GetJob) would silently drop the bytes (found by tests/fuzz).
absl::Status CheckUtf8(const google::protobuf::Message& message, const std::string& prefix) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const std::string name =
        prefix.empty() ? field->name() : absl::StrCat(prefix, ".", field->name());
    const int count = field->is_repeated() ? reflection->FieldSize(message, field) : 1;
    for (int i = 0; i < count; ++i) {
      const std::string element = field->is_repeated() ? absl::StrCat(name, "[", i, "]") : name;
      if (field->type() == FieldDescriptor::TYPE_STRING) {
        const std::string value = field->is_repeated()
                                      ? reflection->GetRepeatedString(message, field, i)
                                      : reflection->GetString(message, field);
        if (!google::protobuf::internal::IsStructurallyValidUTF8(value)) {
          return absl::InvalidArgumentError(absl::StrCat(element, " is not valid UTF-8"));
        }
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        RETURN_IF_ERROR(CheckUtf8(field->is_repeated()
                                      ? reflection->GetRepeatedMessage(message, field, i)
                                      : reflection->GetMessage(message, field),
                                  element));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSpec(const v1::JobSpec& spec) {
  const auto& t = spec.tasks();
  const bool classification = IsClassificationFamily(t.family());
  const AlgorithmInfo* algorithm = FindAlgorithm(spec.algorithm());
  if (algorithm == nullptr) return CheckOptionsApply(spec);  // names the unknown algorithm
  RETURN_IF_ERROR(CheckOneOf("tasks.family", t.family(), kFamilies));
  if (algorithm->classification_only && !classification && t.family() != "tensor_file") {
    // tensor_file tasks are classification when their labels are int64: the learner checks.
    return absl::InvalidArgumentError(absl::StrCat("tasks.family: algorithm '", spec.algorithm(),
                                                   "' needs classification tasks (got '",
                                                   t.family(), "', which is regression)"));
  }
  const char* kModels[] = {"mlp", "conv"};
  RETURN_IF_ERROR(CheckOneOf("model.kind", spec.model().kind(), kModels));
  for (int i = 0; i < spec.model().hidden_sizes_size(); ++i) {
    RETURN_IF_ERROR(
        Positive(absl::StrCat("model.hidden_sizes[", i, "]"), spec.model().hidden_sizes(i)));
  }
  RETURN_IF_ERROR(Positive("model.filters", spec.model().filters()));
  if (spec.model().kind() == "conv" && !classification && t.family() != "tensor_file") {
    return absl::InvalidArgumentError(
        absl::StrCat("model.kind: 'conv' needs image tasks (tasks.family is '", t.family(), "')"));
  }

  RETURN_IF_ERROR(Positive("tasks.shots", t.shots()));
  RETURN_IF_ERROR(Positive("tasks.query_size", t.query_size()));
  if (classification) {
    RETURN_IF_ERROR(Positive("tasks.ways", t.ways()));
    if (t.ways() < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("tasks.ways must be >= 2 (got ", t.ways(), ")"));
    }
    RETURN_IF_ERROR(Positive("tasks.image_size", t.image_size()));
  }
  if ((t.family() == "omniglot" || t.family() == "fashion_mnist" || t.family() == "image_folder") &&
      t.data_dir().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tasks.data_dir is required for family '", t.family(), "'"));
  }
  if (t.family() == "omniglot") {
    const char* kSplits[] = {"maml", "background_evaluation"};
    RETURN_IF_ERROR(CheckOneOf("tasks.split", t.split(), kSplits));
  }
  if (t.family() == "tensor_file" && t.tensor_file().empty()) {
    return absl::InvalidArgumentError("tasks.tensor_file is required for family 'tensor_file'");
  }
  if (t.family() == "linear") RETURN_IF_ERROR(Positive("tasks.input_dim", t.input_dim()));
  RETURN_IF_ERROR(NonNegative("tasks.noise_std", t.noise_std()));

  RETURN_IF_ERROR(Positive("meta_batch_size", spec.meta_batch_size()));
  RETURN_IF_ERROR(Positive("gradient_group_size", spec.gradient_group_size()));
  if (spec.gradient_group_size() > spec.meta_batch_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient_group_size must be at most meta_batch_size (",
                     spec.meta_batch_size(), "; got ", spec.gradient_group_size(), ")"));
  }
  RETURN_IF_ERROR(CheckOptionsApply(spec));
  if (algorithm->Accepts("inner.steps"))
    RETURN_IF_ERROR(Positive("inner.steps", spec.inner().steps()));
  if (algorithm->Accepts("inner.lr")) RETURN_IF_ERROR(Positive("inner.lr", spec.inner().lr()));
  if (algorithm->Accepts("inner.test_steps")) {
    RETURN_IF_ERROR(Positive("inner.test_steps", spec.inner().test_steps()));
  }
  if (algorithm->Accepts("protonet.train_ways")) {
    const int train_ways = spec.protonet().train_ways();
    if (t.family() == "tensor_file") {
      if (train_ways != t.ways()) {
        return absl::InvalidArgumentError(
            "protonet.train_ways: tasks.family 'tensor_file' takes its tasks, and their ways, "
            "from the file; higher-way training needs a sampled image family");
      }
    } else if (train_ways < t.ways()) {
      return absl::InvalidArgumentError(absl::StrCat("protonet.train_ways must be >= tasks.ways (",
                                                     t.ways(), ") (got ", train_ways, ")"));
    }
  }
  if (spec.algorithm() == "meta_lstm") {
    const auto& m = spec.meta_lstm();
    RETURN_IF_ERROR(Positive("meta_lstm.hidden_size", m.hidden_size()));
    if (!std::isfinite(m.preprocess_p()) || m.preprocess_p() <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "meta_lstm.preprocess_p must be a finite number > 0 (got ", m.preprocess_p(), ")"));
    }
    if (!std::isfinite(m.forget_bias_init())) {
      return absl::InvalidArgumentError("meta_lstm.forget_bias_init must be finite");
    }
    if (!std::isfinite(m.input_bias_init())) {
      return absl::InvalidArgumentError("meta_lstm.input_bias_init must be finite");
    }
  }

  const auto& o = spec.outer();
  const char* kOptimizers[] = {"adam", "sgd"};
  RETURN_IF_ERROR(CheckOneOf("outer.kind", o.kind(), kOptimizers));
  RETURN_IF_ERROR(Positive("outer.lr", o.lr()));
  if (o.momentum() < 0 || o.momentum() >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("outer.momentum must be in [0, 1) (got ", o.momentum(), ")"));
  }
  if (o.beta1() <= 0 || o.beta1() >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("outer.beta1 must be in (0, 1) (got ", o.beta1(), ")"));
  }
  if (o.beta2() <= 0 || o.beta2() >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("outer.beta2 must be in (0, 1) (got ", o.beta2(), ")"));
  }
  RETURN_IF_ERROR(Positive("outer.epsilon", o.epsilon()));
  RETURN_IF_ERROR(NonNegative("outer.clip_grad_norm", o.clip_grad_norm()));
  const char* kSchedules[] = {"none", "plateau", "linear"};
  RETURN_IF_ERROR(CheckOneOf("outer.schedule", o.schedule(), kSchedules));
  if (o.plateau_factor() <= 0 || o.plateau_factor() >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("outer.plateau_factor must be in (0, 1) (got ", o.plateau_factor(), ")"));
  }
  RETURN_IF_ERROR(Positive("outer.plateau_patience", o.plateau_patience()));
  RETURN_IF_ERROR(NonNegative("outer.min_lr", o.min_lr()));
  if (o.schedule() == "plateau" && spec.validation_interval() == 0) {
    return absl::InvalidArgumentError(
        "outer.schedule 'plateau' needs validation_interval > 0 (it reacts to "
        "meta-validation loss)");
  }

  RETURN_IF_ERROR(Positive("steps", spec.steps()));
  RETURN_IF_ERROR(NonNegative("validation_interval", spec.validation_interval()));
  RETURN_IF_ERROR(Positive("validation_tasks", spec.validation_tasks()));
  RETURN_IF_ERROR(NonNegative("early_stopping_patience", spec.early_stopping_patience()));
  const char* kSelectionMetrics[] = {"loss", "accuracy"};
  RETURN_IF_ERROR(CheckOneOf("select_best_by", spec.select_best_by(), kSelectionMetrics));
  if (spec.select_best_by() == "accuracy" && !IsClassificationFamily(spec.tasks().family())) {
    return absl::InvalidArgumentError(
        absl::StrCat("select_best_by 'accuracy' needs a classification family (tasks.family is '",
                     spec.tasks().family(), "', which has no accuracy)"));
  }
  if (spec.early_stopping_patience() > 0 && spec.validation_interval() == 0) {
    return absl::InvalidArgumentError("early_stopping_patience needs validation_interval > 0");
  }
  RETURN_IF_ERROR(NonNegative("checkpoint_interval", spec.checkpoint_interval()));
  if (spec.checkpoint_interval_seconds() < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint_interval_seconds must be > 0, 0 (default 300) or -1 (never) (got ",
                     spec.checkpoint_interval_seconds(), ")"));
  }
  RETURN_IF_ERROR(Positive("test_tasks", spec.test_tasks()));
  RETURN_IF_ERROR(NonNegative("resources.max_workers", spec.resources().max_workers()));
  const char* kDeviceTypes[] = {"cpu", "cuda"};
  RETURN_IF_ERROR(
      CheckOneOf("resources.device_type", spec.resources().device_type(), kDeviceTypes));
  const char* kDtypes[] = {"float32", "float64"};
  RETURN_IF_ERROR(CheckOneOf("dtype", spec.dtype(), kDtypes));
  return absl::OkStatus();
}

}  // namespace

bool IsClassificationFamily(const std::string& family) {
  return family == "synthetic_images" || family == "omniglot" || family == "fashion_mnist" ||
         family == "image_folder";
}

absl::StatusOr<std::string> DeviceType(const std::string& device) {
  if (device.empty() || device == "cpu") return std::string("cpu");
  if (device == "cuda") return std::string("cuda");
  int index = 0;
  if (absl::StartsWith(device, "cuda:") && absl::SimpleAtoi(device.substr(5), &index) &&
      index >= 0) {
    return std::string("cuda");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device must be cpu, cuda or cuda:N (got \"", device, "\")"));
}

absl::StatusOr<v1::JobSpec> ParseJobSpec(const std::string& text) {
  v1::JobSpec spec;
  const std::string stripped(absl::StripLeadingAsciiWhitespace(text));
  if (!stripped.empty() && stripped[0] == '{') {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    auto status = google::protobuf::util::JsonStringToMessage(stripped, &spec, options);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("job spec (JSON): ", std::string(status.message())));
    }
    RETURN_IF_ERROR(CheckUtf8(spec, ""));
    return spec;
  }
  // Text format: collect the parser's messages so the error names the line.
  class Collector : public google::protobuf::io::ErrorCollector {
   public:
    void AddError(int line, int column, const std::string& message) override {
      if (first.empty()) first = absl::StrCat("line ", line + 1, ":", column + 1, ": ", message);
    }
    std::string first;
  };
  Collector errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &spec)) {
    return absl::InvalidArgumentError(absl::StrCat("job spec (text format): ", errors.first));
  }
  RETURN_IF_ERROR(CheckUtf8(spec, ""));
  return spec;
}

absl::StatusOr<v1::JobSpec> ReadJobSpecFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open job spec '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto spec = ParseJobSpec(buffer.str());
  if (!spec.ok()) {
    return absl::Status(spec.status().code(), absl::StrCat(path, ": ", spec.status().message()));
  }
  return spec;
}

std::string JobSpecToJson(const v1::JobSpec& spec) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(spec, &out, options);
  return out;
}

absl::StatusOr<v1::JobSpec> NormalizeJobSpec(v1::JobSpec spec) {
  return NormalizeJobSpec(std::move(spec), JobLimits());
}

absl::StatusOr<v1::JobSpec> NormalizeJobSpec(v1::JobSpec spec, const JobLimits& limits) {
  if (spec.algorithm().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("algorithm is required (one of ", AlgorithmNames(), ")"));
  }
  if (spec.tasks().family().empty()) {
    return absl::InvalidArgumentError(
        "tasks.family is required (one of sinusoid, linear, synthetic_images, omniglot, "
        "fashion_mnist, image_folder, tensor_file)");
  }
  // Before any default: a field the user set for another algorithm is an error, and the
  // defaults below fill only the options of this one.
  RETURN_IF_ERROR(CheckOptionsApply(spec));
  const AlgorithmInfo& algorithm = *FindAlgorithm(spec.algorithm());
  auto* t = spec.mutable_tasks();
  const bool classification = IsClassificationFamily(t->family());
  const bool reptile = spec.algorithm() == "reptile";

  auto* m = spec.mutable_model();
  if (m->kind().empty()) m->set_kind("mlp");
  if (m->kind() == "mlp" && m->hidden_sizes_size() == 0) {
    if (classification) {
      for (int64_t h : {256, 128, 64, 64}) m->add_hidden_sizes(h);
    } else {
      for (int64_t h : {40, 40}) m->add_hidden_sizes(h);
    }
  }
  if (m->filters() == 0) m->set_filters(64);

  if (t->ways() == 0) t->set_ways(5);
  if (t->shots() == 0) t->set_shots(classification ? 1 : 10);
  if (t->query_size() == 0) t->set_query_size(classification ? 15 : t->shots());
  if (t->family() == "omniglot" && t->split().empty()) t->set_split("maml");
  if (t->image_size() == 0) t->set_image_size(28);
  if (t->input_dim() == 0) t->set_input_dim(1);

  if (spec.meta_batch_size() == 0) spec.set_meta_batch_size(classification ? 32 : 25);
  if (spec.gradient_group_size() == 0) spec.set_gradient_group_size(1);
  auto* in = spec.mutable_inner();
  const bool meta_lstm = spec.algorithm() == "meta_lstm";
  if (algorithm.Accepts("inner.steps") && in->steps() == 0) in->set_steps(meta_lstm ? 5 : 1);
  if (algorithm.Accepts("inner.lr") && in->lr() == 0) in->set_lr(classification ? 0.4 : 0.01);
  if (algorithm.Accepts("inner.test_steps") && in->test_steps() == 0) {
    // Meta-LSTM's update rule is learned for a fixed number of steps: test with as many.
    in->set_test_steps(classification && t->ways() == 5 && !meta_lstm ? in->steps() + 3
                                                                      : in->steps());
  }
  if (meta_lstm) {
    // The defaults of Ravi & Larochelle's reference code (job.proto, MetaLstmSpec).
    auto* lstm = spec.mutable_meta_lstm();
    if (lstm->hidden_size() == 0) lstm->set_hidden_size(20);
    if (lstm->preprocess_p() == 0) lstm->set_preprocess_p(10);
    if (!lstm->has_forget_bias_init()) lstm->set_forget_bias_init(4.5);
    if (!lstm->has_input_bias_init()) lstm->set_input_bias_init(-4.5);
    if (spec.outer().clip_grad_norm() == 0) spec.mutable_outer()->set_clip_grad_norm(0.25);
  }
  if (algorithm.Accepts("protonet.train_ways") && spec.protonet().train_ways() == 0) {
    spec.mutable_protonet()->set_train_ways(t->ways());
  }

  auto* o = spec.mutable_outer();
  if (o->kind().empty()) o->set_kind(reptile ? "sgd" : "adam");
  if (o->lr() == 0) o->set_lr(reptile ? 1.0 : 0.001);
  if (o->beta1() == 0) o->set_beta1(0.9);
  if (o->beta2() == 0) o->set_beta2(0.999);
  if (o->epsilon() == 0) o->set_epsilon(1e-8);
  if (o->schedule().empty()) o->set_schedule(reptile ? "linear" : "none");
  if (o->plateau_factor() == 0) o->set_plateau_factor(0.5);
  if (o->plateau_patience() == 0) o->set_plateau_patience(5);

  if (spec.steps() == 0) spec.set_steps(1000);
  if (spec.validation_tasks() == 0) spec.set_validation_tasks(100);
  if (spec.test_tasks() == 0) spec.set_test_tasks(600);
  if (spec.checkpoint_interval_seconds() == 0) spec.set_checkpoint_interval_seconds(300);
  if (spec.dtype().empty()) spec.set_dtype("float32");
  if (spec.resources().device_type().empty()) spec.mutable_resources()->set_device_type("cpu");
  if (spec.select_best_by().empty()) spec.set_select_best_by("loss");

  RETURN_IF_ERROR(ValidateSpec(spec));
  RETURN_IF_ERROR(CheckJobLimits(spec, limits));
  return spec;
}

}  // namespace metatrain::meta
