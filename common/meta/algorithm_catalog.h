#ifndef METATRAIN_COMMON_META_ALGORITHM_CATALOG_H_
#define METATRAIN_COMMON_META_ALGORITHM_CATALOG_H_

// The one table of metatrain's meta-learning algorithms: name, summary, paper, and the
// algorithm-specific job options that apply to each, with their defaults. Everything that
// lists algorithms reads it: NormalizeJobSpec (which names exist, which options a job may
// set), `metactl algorithms`, and docs/core-models.md (a test checks the doc holds
// FormatAlgorithmCatalog()'s text verbatim).
//
// Adding an algorithm: one entry in AlgorithmCatalog() (algorithm_catalog.cc), its learner
// in MakeMetaLearner (learner.cc), its defaults in NormalizeJobSpec (job_spec.cc, only for
// the options its entry lists), then paste the new `metactl algorithms` output into
// docs/core-models.md.
//
// Thread-safe: the catalogue is immutable after first use.

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

struct AlgorithmOption {
  // Path in JobSpec, "<group>.<field>", e.g. "inner.steps"; the group is one of
  // AlgorithmOptionGroups().
  std::string field;
  // The default NormalizeJobSpec fills in, as users read it.
  std::string default_value;
  std::string description;
};

struct AlgorithmInfo {
  std::string name;     // JobSpec.algorithm
  std::string summary;  // one line
  std::string paper;    // citation
  // Adapts with gradient steps on the support set; evaluation reports the query metrics
  // before and after inner.test_steps steps. false: no inner loop (evaluation's "before"
  // and "after" are the same classifier, and Assignment.eval_steps is 0).
  bool inner_loop = true;
  // Only classification families (INVALID_ARGUMENT naming tasks.family otherwise).
  bool classification_only = false;
  // Classifies episodes of any number of classes with the same parameters (no head sized
  // by tasks.ways), so `metactl evaluate --episodes` takes any way.
  bool any_ways = false;
  // Outer-loop defaults (outer.* apply to every algorithm), as users read them.
  std::string outer_defaults;
  // The algorithm-specific options (fields of the AlgorithmOptionGroups) that apply.
  std::vector<AlgorithmOption> options;

  bool Accepts(std::string_view field) const;
};

// Every algorithm, in the order `metactl algorithms` lists them.
const std::vector<AlgorithmInfo>& AlgorithmCatalog();

// nullptr for an unknown name.
const AlgorithmInfo* FindAlgorithm(std::string_view name);

// "maml, fomaml, reptile, ..." (for error messages).
std::string AlgorithmNames();

// The JobSpec message fields whose sub-fields belong to algorithms: "inner", "meta_lstm",
// "protonet". Every other field (model, tasks, outer, ...) applies to all of them.
const std::vector<std::string>& AlgorithmOptionGroups();

// INVALID_ARGUMENT naming the first field of an option group that `spec` sets (a non-zero
// value) and that its algorithm does not accept, e.g. "protonet.train_ways does not apply
// to algorithm 'maml' (only to protonet)". spec.algorithm() must be in the catalogue.
absl::Status CheckOptionsApply(const v1::JobSpec& spec);

// The text `metactl algorithms` prints and docs/core-models.md holds.
std::string FormatAlgorithmCatalog();

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_ALGORITHM_CATALOG_H_
