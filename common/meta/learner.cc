#include "common/meta/learner.h"

#include <cmath>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/meta/algorithm_catalog.h"
#include "common/meta/maml_learner.h"
#include "common/meta/meta_lstm_learner.h"
#include "common/meta/protonet_learner.h"
#include "common/meta/reptile_learner.h"

namespace metatrain::meta {

absl::StatusOr<std::unique_ptr<MetaLearner>> MakeMetaLearner(const v1::JobSpec& spec,
                                                             std::shared_ptr<const Model> model,
                                                             LossKind loss) {
  if (model == nullptr) return absl::InvalidArgumentError("MakeMetaLearner: no model");
  const std::string& algorithm = spec.algorithm();
  if (algorithm == "protonet") {
    if (loss != LossKind::kCrossEntropy) {
      return absl::InvalidArgumentError(
          absl::StrCat("algorithm 'protonet' classifies; tasks.family '", spec.tasks().family(),
                       "' gives regression tasks (a tensor_file needs int64 labels)"));
    }
    bool has_body = false;
    for (const ParamSpec& p : model->param_specs()) has_body = has_body || !p.head;
    if (!has_body) {
      return absl::InvalidArgumentError(
          "algorithm 'protonet' embeds with the model's hidden layers: model.hidden_sizes must "
          "not be empty");
    }
    return std::make_unique<ProtoNetLearner>(std::move(model));
  }
  const int steps = spec.inner().steps();
  const double lr = spec.inner().lr();
  if (steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat("inner.steps must be >= 0 (got ", steps, ")"));
  }
  if (algorithm == "meta_lstm") {
    // inner.lr does not apply: the learned input gate is the step size.
    const v1::MetaLstmSpec& m = spec.meta_lstm();
    if (m.hidden_size() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("meta_lstm.hidden_size must be > 0 (got ", m.hidden_size(), ")"));
    }
    if (!std::isfinite(m.preprocess_p()) || m.preprocess_p() <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "meta_lstm.preprocess_p must be a finite number > 0 (got ", m.preprocess_p(), ")"));
    }
    MetaLstmLearner::Options options;
    options.inner_steps = steps;
    options.hidden_size = m.hidden_size();
    options.preprocess_p = m.preprocess_p();
    if (m.has_forget_bias_init()) options.forget_bias_init = m.forget_bias_init();
    if (m.has_input_bias_init()) options.input_bias_init = m.input_bias_init();
    return std::make_unique<MetaLstmLearner>(std::move(model), loss, options);
  }
  if (!std::isfinite(lr) || lr <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("inner.lr must be a finite number > 0 (got ", lr, ")"));
  }
  if (algorithm == "reptile") {
    return std::make_unique<ReptileLearner>(std::move(model), loss, steps, lr);
  }
  MamlLearner::Options options;
  options.inner_steps = steps;
  options.inner_lr = lr;
  options.recompute = spec.inner().recompute();
  if (algorithm == "maml") {
  } else if (algorithm == "fomaml") {
    if (options.recompute) {
      return absl::InvalidArgumentError(
          "inner.recompute does not apply to algorithm 'fomaml' (first order keeps no inner "
          "step's graph)");
    }
    options.second_order = false;
  } else if (algorithm == "meta_sgd") {
    options.learn_inner_lr = true;
  } else if (algorithm == "anil") {
    options.head_only = true;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("algorithm: unknown '", algorithm,
                                                   "' (expected one of ", AlgorithmNames(), ")"));
  }
  return std::make_unique<MamlLearner>(std::move(model), loss, options);
}

}  // namespace metatrain::meta
