#include "common/meta/algorithm_catalog.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace metatrain::meta {
namespace {

// The inner-loop options of the gradient-based algorithms, defaults as NormalizeJobSpec
// fills them.
std::vector<AlgorithmOption> InnerOptions(const std::string& lr_description) {
  return {
      {"inner.steps", "1", "adaptation steps during meta-training"},
      {"inner.lr", "0.01 (regression), 0.4 (classification)", lr_description},
      {"inner.test_steps", "inner.steps (regression), inner.steps + 3 (5-way classification)",
       "adaptation steps at meta-validation and meta-test"},
  };
}

// Second order only: what the meta-gradient keeps of the inner loop (maml_learner.h).
std::vector<AlgorithmOption> SecondOrderInnerOptions(const std::string& lr_description) {
  std::vector<AlgorithmOption> options = InnerOptions(lr_description);
  options.push_back({"inner.recompute", "false",
                     "rebuild each inner step's graph during the outer backward instead of "
                     "keeping every step's: memory of one step whatever inner.steps, for about "
                     "one more forward and backward per step (same gradient, same bits)"});
  return options;
}

std::vector<AlgorithmInfo> BuildCatalog() {
  const std::string kAdam = "adam, lr 0.001, schedule none";
  std::vector<AlgorithmInfo> catalog;
  {
    AlgorithmInfo a;
    a.name = "maml";
    a.summary =
        "learns an initialisation; the meta-gradient differentiates through the inner SGD "
        "steps (second order)";
    a.paper =
        "Finn, Abbeel, Levine: Model-Agnostic Meta-Learning for Fast Adaptation of Deep "
        "Networks, ICML 2017";
    a.outer_defaults = kAdam;
    a.options = SecondOrderInnerOptions("inner learning rate");
    catalog.push_back(std::move(a));
  }
  {
    AlgorithmInfo a;
    a.name = "fomaml";
    a.summary =
        "first-order MAML: the meta-gradient is the query-loss gradient at the adapted "
        "parameters";
    a.paper =
        "Finn, Abbeel, Levine: Model-Agnostic Meta-Learning for Fast Adaptation of Deep "
        "Networks, ICML 2017 (section 5.2)";
    a.outer_defaults = kAdam;
    a.options = InnerOptions("inner learning rate");
    catalog.push_back(std::move(a));
  }
  {
    AlgorithmInfo a;
    a.name = "reptile";
    a.summary =
        "moves the initialisation toward the parameters adapted by plain SGD on support and "
        "query (meta-gradient theta - phi)";
    a.paper =
        "Nichol, Achiam, Schulman: On First-Order Meta-Learning Algorithms, arXiv:1803.02999, "
        "2018";
    a.outer_defaults = "sgd, lr 1.0 (the meta step size), schedule linear";
    a.options = InnerOptions("inner learning rate");
    catalog.push_back(std::move(a));
  }
  {
    AlgorithmInfo a;
    a.name = "meta_sgd";
    a.summary = "MAML with a learned per-parameter inner learning rate (meta-parameters lr.<name>)";
    a.paper =
        "Li, Zhou, Chen, Li: Meta-SGD: Learning to Learn Quickly for Few-Shot Learning, "
        "arXiv:1707.09835, 2017";
    a.outer_defaults = kAdam;
    a.options = SecondOrderInnerOptions("initial value of the learned rates");
    catalog.push_back(std::move(a));
  }
  {
    AlgorithmInfo a;
    a.name = "anil";
    a.summary = "MAML whose inner loop adapts the head only; the body is learned by the outer loop";
    a.paper =
        "Raghu, Raghu, Bengio, Vinyals: Rapid Learning or Feature Reuse? Towards Understanding "
        "the Effectiveness of MAML, ICLR 2020";
    a.outer_defaults = kAdam;
    a.options = SecondOrderInnerOptions("inner learning rate (head)");
    catalog.push_back(std::move(a));
  }
  {
    AlgorithmInfo a;
    a.name = "meta_lstm";
    a.summary =
        "an LSTM meta-learner replaces gradient descent in the inner loop: the learner's "
        "parameters are its cell state, theta_t = sigmoid(f_t) * theta_{t-1} - sigmoid(i_t) * "
        "grad_t (input gate: a learned per-coordinate step size; forget gate: a learned "
        "decay), coordinate-wise after a first LSTM over the preprocessed loss and gradient; "
        "the initialisation is meta-learned too, through the unrolled steps with the loss and "
        "gradient inputs taken as constants";
    a.paper =
        "Ravi, Larochelle: Optimization as a Model for Few-Shot Learning, ICLR 2017 (reference "
        "code twitter-research/meta-learning-lstm)";
    a.outer_defaults = "adam, lr 0.001, schedule none, clip_grad_norm 0.25";
    a.options = {
        {"inner.steps", "5", "unrolled meta-learner updates during meta-training"},
        {"inner.test_steps", "inner.steps",
         "updates at meta-validation and meta-test (the rule is learned for inner.steps)"},
        {"meta_lstm.hidden_size", "20", "hidden units of the first, coordinate-wise LSTM"},
        {"meta_lstm.preprocess_p", "10",
         "threshold p of the loss and gradient preprocessing (Andrychowicz et al.)"},
        {"meta_lstm.forget_bias_init", "4.5",
         "initial forget-gate bias (high: start by keeping the parameters)"},
        {"meta_lstm.input_bias_init", "-4.5", "initial input-gate bias (low: small first steps)"},
    };
    catalog.push_back(std::move(a));
  }
  {
    AlgorithmInfo a;
    a.name = "protonet";
    a.summary =
        "learns an embedding (the model without its head); classes are the mean support "
        "embeddings, queries go to the nearest by squared Euclidean distance; no inner loop";
    a.paper = "Snell, Swersky, Zemel: Prototypical Networks for Few-shot Learning, NeurIPS 2017";
    a.inner_loop = false;
    a.classification_only = true;
    a.any_ways = true;
    a.outer_defaults = kAdam;
    a.options = {{"protonet.train_ways", "tasks.ways",
                  "classes per meta-training episode (higher-way training; validation and "
                  "meta-test use tasks.ways)"}};
    catalog.push_back(std::move(a));
  }
  return catalog;
}

}  // namespace

bool AlgorithmInfo::Accepts(std::string_view field) const {
  return std::any_of(options.begin(), options.end(),
                     [&](const AlgorithmOption& o) { return o.field == field; });
}

const std::vector<AlgorithmInfo>& AlgorithmCatalog() {
  static const std::vector<AlgorithmInfo>* const catalog =
      new std::vector<AlgorithmInfo>(BuildCatalog());
  return *catalog;
}

const AlgorithmInfo* FindAlgorithm(std::string_view name) {
  for (const AlgorithmInfo& a : AlgorithmCatalog()) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::string AlgorithmNames() {
  std::vector<std::string> names;
  for (const AlgorithmInfo& a : AlgorithmCatalog()) names.push_back(a.name);
  return absl::StrJoin(names, ", ");
}

const std::vector<std::string>& AlgorithmOptionGroups() {
  static const std::vector<std::string>* const groups =
      new std::vector<std::string>{"inner", "meta_lstm", "protonet"};
  return *groups;
}

absl::Status CheckOptionsApply(const v1::JobSpec& spec) {
  const AlgorithmInfo* algorithm = FindAlgorithm(spec.algorithm());
  if (algorithm == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("algorithm: unknown '", spec.algorithm(),
                                                   "' (expected one of ", AlgorithmNames(), ")"));
  }
  const google::protobuf::Descriptor* descriptor = spec.GetDescriptor();
  const google::protobuf::Reflection* reflection = spec.GetReflection();
  for (const std::string& group : AlgorithmOptionGroups()) {
    const google::protobuf::FieldDescriptor* field = descriptor->FindFieldByName(group);
    if (field == nullptr || !reflection->HasField(spec, field)) continue;
    const google::protobuf::Message& options = reflection->GetMessage(spec, field);
    // proto3: the fields listed are exactly those holding a non-zero value.
    std::vector<const google::protobuf::FieldDescriptor*> set;
    options.GetReflection()->ListFields(options, &set);
    for (const google::protobuf::FieldDescriptor* option : set) {
      const std::string path = absl::StrCat(group, ".", option->name());
      if (algorithm->Accepts(path)) continue;
      std::vector<std::string> takers;
      for (const AlgorithmInfo& a : AlgorithmCatalog()) {
        if (a.Accepts(path)) takers.push_back(a.name);
      }
      return absl::InvalidArgumentError(
          absl::StrCat(path, " does not apply to algorithm '", spec.algorithm(), "' (",
                       takers.empty() ? "no algorithm of this build uses it"
                                      : absl::StrCat("only to ", absl::StrJoin(takers, ", ")),
                       "; `metactl algorithms` lists each algorithm's options)"));
    }
  }
  return absl::OkStatus();
}

std::string FormatAlgorithmCatalog() {
  std::string out;
  for (const AlgorithmInfo& a : AlgorithmCatalog()) {
    if (!out.empty()) absl::StrAppend(&out, "\n");
    absl::StrAppend(&out, a.name, "\n");
    absl::StrAppend(&out, "  ", a.summary, "\n");
    absl::StrAppend(&out, "  paper: ", a.paper, "\n");
    absl::StrAppend(&out, "  tasks: ",
                    a.classification_only ? "classification only" : "regression and classification",
                    a.any_ways ? " (any number of classes per episode)" : "", "\n");
    absl::StrAppend(&out, "  options:");
    if (a.options.empty()) absl::StrAppend(&out, " none");
    absl::StrAppend(&out, "\n");
    for (const AlgorithmOption& o : a.options) {
      absl::StrAppend(&out, "    ", o.field, ": ", o.description, "\n");
      absl::StrAppend(&out, "      default: ", o.default_value, "\n");
    }
    if (!a.inner_loop) {
      absl::StrAppend(&out, "  inner.*: not applicable (no inner loop; evaluation reports the ",
                      "same classifier before and after)\n");
    }
    absl::StrAppend(&out, "  outer defaults: ", a.outer_defaults, "\n");
  }
  return out;
}

}  // namespace metatrain::meta
