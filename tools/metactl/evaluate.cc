#include "tools/metactl/evaluate.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/data/image_folder.h"
#include "common/meta/algorithm_catalog.h"
#include "common/meta/checkpoint.h"
#include "common/meta/evaluation_proto.h"
#include "common/meta/job_spec.h"
#include "common/meta/learner.h"
#include "common/meta/model.h"
#include "common/meta/rng.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "metatrain/v1/job_service.pb.h"
#include "tools/metactl/progress.h"

namespace metatrain::metactl {
namespace {

// How a family turns stored pixels into model input: Omniglot's loader inverts the PNGs
// (255 = ink, as MAML and learn2learn do); the other image families keep them as stored.
// All then divide by 255 (image_classification_tasks.cc).
absl::StatusOr<bool> FamilyInvertsPixels(const std::string& family) {
  if (family == "omniglot") return true;
  if (family == "fashion_mnist" || family == "image_folder" || family == "synthetic_images") {
    return false;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--episodes needs an image classification job (omniglot, fashion_mnist, image_folder or "
      "synthetic_images); the job's tasks.family is '",
      family, "'"));
}

bool IsGray(const data::ImageSet& images) {
  if (images.channels == 1) return true;
  if (images.channels != 3) return false;
  const int64_t plane = images.height * images.width;
  for (int64_t i = 0; i < images.size(); ++i) {
    const uint8_t* p = images.pixels.data() + i * images.image_bytes();
    for (int64_t j = 0; j < plane; ++j) {
      if (p[j] != p[plane + j] || p[j] != p[2 * plane + j]) return false;
    }
  }
  return true;
}

// Keeps the first of 3 equal channels (undoes ExpandToRgb).
data::ImageSet FirstChannel(const data::ImageSet& images) {
  data::ImageSet out = images;
  out.channels = 1;
  const int64_t plane = images.height * images.width;
  out.pixels.resize(images.size() * plane);
  for (int64_t i = 0; i < images.size(); ++i) {
    std::copy_n(images.pixels.data() + i * images.image_bytes(), plane,
                out.pixels.data() + i * plane);
  }
  return out;
}

double At(const at::Tensor& t) { return t.defined() ? t.reshape({-1})[0].item<double>() : -1; }

}  // namespace

absl::StatusOr<EvaluateOptions> MakeEvaluateOptions(const EvaluateFlags& flags) {
  EvaluateOptions options;
  if (flags.split.has_value()) {
    options.split = *flags.split;
    if (options.split != "test" && options.split != "validation") {
      return absl::InvalidArgumentError(
          absl::StrCat("--split must be test or validation (got \"", options.split, "\")"));
    }
  }
  if (flags.tasks.has_value()) {
    if (*flags.tasks < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tasks must be an integer >= 1 (got \"", *flags.tasks, "\")"));
    }
    options.tasks = *flags.tasks;
  }
  if (!flags.inner_steps.empty()) {
    for (absl::string_view part : absl::StrSplit(flags.inner_steps, ',')) {
      int n = 0;
      if (!absl::SimpleAtoi(part, &n) || n < 0 || n > 100000) {
        return absl::InvalidArgumentError(
            absl::StrCat("--inner_steps must be integers >= 0, comma-separated (got \"",
                         flags.inner_steps, "\")"));
      }
      options.inner_steps.push_back(n);
    }
  }
  if (flags.arguments.size() != 1) {
    return absl::InvalidArgumentError(
        "evaluate takes one checkpoint file: metactl evaluate CHECKPOINT.pt --job JOB.json ...");
  }
  options.checkpoint = flags.arguments[0];
  options.job = flags.job;
  if (options.job.empty()) {
    return absl::InvalidArgumentError(
        "evaluate needs --job JOB.json (the job spec the checkpoint was trained with)");
  }
  options.episodes = flags.episodes;
  options.seed = flags.seed;
  options.verbose = flags.verbose;
  if (!options.episodes.empty() && (flags.split.has_value() || flags.tasks.has_value())) {
    return absl::InvalidArgumentError(
        "--split and --tasks sample tasks of the job's family; they do not go with --episodes");
  }
  return options;
}

absl::StatusOr<meta::TensorList> LoadCheckpointParams(const meta::JobContext& job,
                                                      const std::string& path, std::string* note) {
  ASSIGN_OR_RETURN(meta::StateDict state, meta::LoadStateDict(path));
  const auto& specs = job.learner->meta_param_specs();
  // Meta-SGD's learned rates follow the model's parameters as "lr.<name>". A plain model
  // state_dict lacks them: they keep their initial value inner.lr, as for initial_weights.
  std::vector<meta::ParamSpec> present;
  std::vector<size_t> where;
  std::vector<std::string> defaulted;
  bool any_rate_spec = false;
  for (size_t i = 0; i < specs.size(); ++i) {
    const bool rate = specs[i].name.rfind("lr.", 0) == 0;
    any_rate_spec = any_rate_spec || rate;
    if (!rate || state.count(specs[i].name) > 0) {
      present.push_back(specs[i]);
      where.push_back(i);
    } else {
      defaulted.push_back(specs[i].name);
    }
  }
  auto loaded = meta::FromStateDict(present, state, job.dtype, /*allow_extra=*/false);
  if (!loaded.ok()) {
    std::string hint;
    const bool meta_lstm_job = job.spec.algorithm() == "meta_lstm";
    for (const auto& [name, tensor] : state) {
      if (!any_rate_spec && name.rfind("lr.", 0) == 0) {
        hint = " (it holds Meta-SGD learning rates: set \"algorithm\": \"meta_sgd\" in the job)";
        break;
      }
      if (!meta_lstm_job && name.rfind("metalstm.", 0) == 0) {
        hint = " (it holds Meta-LSTM weights: set \"algorithm\": \"meta_lstm\" in the job)";
        break;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint ", path, " does not match the job's model: ", loaded.status().message(), hint));
  }
  meta::TensorList params;
  if (defaulted.empty()) {
    params = std::move(*loaded);
  } else {
    ASSIGN_OR_RETURN(params, CatchTorch("initial Meta-SGD rates", [&] {
                       meta::Rng rng(meta::MixSeed({job.spec.seed(), 0x696e6974ull}));
                       return job.learner->InitialMetaParams(rng, job.dtype);
                     }));
    for (size_t j = 0; j < where.size(); ++j) params[where[j]] = (*loaded)[j];
    if (note != nullptr) {
      *note = absl::StrFormat(
          "the checkpoint has no Meta-SGD learning rates (%d lr.* tensors): adapting with "
          "inner.lr = %g",
          defaulted.size(), job.spec.inner().lr());
    }
  }
  return params;
}

absl::StatusOr<meta::TaskBatch> EpisodeToTask(const meta::JobContext& job,
                                              const data::Episode& episode) {
  ASSIGN_OR_RETURN(const bool invert, FamilyInvertsPixels(job.spec.tasks().family()));
  const std::vector<int64_t>& input = job.model->input_shape();
  if (input.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("--episodes: the job's model does not take images (input shape has ",
                     input.size(), " dimensions)"));
  }
  const std::string where = absl::StrCat("episode '", episode.name, "'");
  const int64_t ways = static_cast<int64_t>(episode.support.class_names.size());
  // Prototypical networks take episodes of any way; a learned head takes its own.
  const meta::AlgorithmInfo* algorithm = meta::FindAlgorithm(job.spec.algorithm());
  if (ways != job.model->output_size() && !(algorithm != nullptr && algorithm->any_ways)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, " has ", ways, " classes (", absl::StrJoin(episode.support.class_names, ", "),
        ") but the model was trained for ", job.model->output_size(), "-way tasks (tasks.ways)"));
  }
  auto prepare = [&](const data::ImageSet& images,
                     const char* part) -> absl::StatusOr<data::ImageSet> {
    data::ImageSet out = images;
    if (out.channels != input[0]) {
      if (input[0] == 3 && out.channels == 1) {
        data::ExpandToRgb(out);
      } else if (input[0] == 1 && out.channels == 3 && IsGray(out)) {
        out = FirstChannel(out);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": ", part, " images have ", out.channels == 3 ? "colour (3 channels)" : "",
            out.channels == 3 ? "" : absl::StrCat(out.channels, " channels"),
            " but the model takes ", input[0], input[0] == 1 ? " channel (gray)" : " channels"));
      }
    }
    if (out.height != input[1] || out.width != input[2]) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", part, " images are ", out.height, "x", out.width,
                       " but the model takes ", input[1], "x", input[2], " (tasks.image_size)"));
    }
    if (out.size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": no ", part, " images"));
    }
    return out;
  };
  ASSIGN_OR_RETURN(const data::ImageSet support, prepare(episode.support, "support"));
  ASSIGN_OR_RETURN(const data::ImageSet query, prepare(episode.query, "query"));
  return CatchTorch(where, [&] {
    // Exactly the family's arithmetic: bytes -> float -> / 255 -> dtype.
    auto images = [&](const data::ImageSet& set) {
      at::Tensor bytes = at::from_blob(const_cast<uint8_t*>(set.pixels.data()),
                                       {set.size(), set.channels, set.height, set.width},
                                       at::TensorOptions().dtype(at::kByte))
                             .clone();
      if (invert) bytes = 255 - bytes;
      return bytes.to(at::kFloat).div_(255.0).to(job.dtype).unsqueeze(0);
    };
    auto labels = [&](const data::ImageSet& set) {
      std::vector<int64_t> values(set.labels.begin(), set.labels.end());
      return at::tensor(values, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
    };
    meta::TaskBatch batch;
    batch.support_x = images(support);
    batch.support_y = labels(support);
    batch.query_x = images(query);
    batch.query_y = labels(query);
    return batch;
  });
}

// The job's model and learner for `channels`-channel images, without its task family.
absl::StatusOr<meta::JobContext> ModelOnlyContext(const v1::JobSpec& spec, int64_t channels) {
  const int64_t size = spec.tasks().image_size();
  meta::JobContext job;
  job.spec = spec;
  job.dtype = spec.dtype() == "float64" ? at::kDouble : at::kFloat;
  ASSIGN_OR_RETURN(std::unique_ptr<meta::Model> model,
                   meta::MakeModel(spec.model(), {channels, size, size}, spec.tasks().ways()));
  job.model = std::move(model);
  ASSIGN_OR_RETURN(job.learner,
                   meta::MakeMetaLearner(spec, job.model, meta::LossKind::kCrossEntropy));
  return job;
}

// The context for evaluating episodes. Episodes bring their own data, so for families that
// read a dataset only the model and learner are built: a user with a checkpoint and
// episodes needs no copy of the training data. Omniglot and Fashion-MNIST models take gray
// images; an image_folder model takes gray or colour, whichever the checkpoint was trained
// on. synthetic_images has no files: its family is built as usual.
absl::StatusOr<meta::JobContext> EpisodesContext(const v1::JobSpec& spec,
                                                 const std::string& checkpoint) {
  const std::string& family = spec.tasks().family();
  if (family == "omniglot" || family == "fashion_mnist") return ModelOnlyContext(spec, 1);
  if (family != "image_folder") return meta::MakeJobContext(spec);
  absl::StatusOr<meta::StateDict> state = meta::LoadStateDict(checkpoint);
  if (state.ok()) {
    for (int64_t channels : {1, 3}) {
      ASSIGN_OR_RETURN(meta::JobContext job, ModelOnlyContext(spec, channels));
      bool fits = true;
      for (const meta::ParamSpec& param : job.learner->meta_param_specs()) {
        auto it = state->find(param.name);
        fits = fits && (it == state->end() || it->second.sizes().vec() == param.shape);
      }
      if (fits) return job;
    }
  }
  // The checkpoint is unreadable or fits neither: loading it reports what is wrong.
  return ModelOnlyContext(spec, 1);
}

absl::StatusOr<EvaluationReport> RunEvaluation(const EvaluateOptions& options) {
  auto read = meta::ReadJobSpecFile(options.job);
  if (!read.ok()) {
    // The job file is the user's argument, not a missing job: INVALID_ARGUMENT (exit 2).
    return absl::InvalidArgumentError(absl::StrCat("--job: ", read.status().message()));
  }
  v1::JobSpec spec = *read;
  if (options.seed.has_value()) spec.set_seed(*options.seed);
  ASSIGN_OR_RETURN(spec, meta::NormalizeJobSpec(spec));
  const meta::AlgorithmInfo& algorithm = *meta::FindAlgorithm(spec.algorithm());
  if (!algorithm.inner_loop && !options.inner_steps.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--inner_steps: algorithm '", spec.algorithm(),
                                                   "' has no inner loop to take steps"));
  }
  std::optional<data::EpisodeSet> episodes;
  if (!options.episodes.empty()) {
    RETURN_IF_ERROR(FamilyInvertsPixels(spec.tasks().family()).status());
    absl::StatusOr<data::EpisodeSet> loaded =
        data::LoadEpisodes(options.episodes, spec.tasks().image_size());
    if (!loaded.ok()) {
      // An unreadable PNG is a bad argument of this command, like a corrupt checkpoint.
      if (loaded.status().code() == absl::StatusCode::kDataLoss) {
        return absl::InvalidArgumentError(loaded.status().message());
      }
      return loaded.status();
    }
    episodes = std::move(*loaded);
  }
  absl::StatusOr<meta::JobContext> made =
      episodes ? EpisodesContext(spec, options.checkpoint) : meta::MakeJobContext(spec);
  if (!made.ok()) return made.status();
  const meta::JobContext& job = *made;

  EvaluationReport report;
  report.inner_loop = algorithm.inner_loop;
  std::string note;
  ASSIGN_OR_RETURN(meta::TensorList params, LoadCheckpointParams(job, options.checkpoint, &note));
  if (!note.empty()) report.notes.push_back(note);
  std::vector<int> steps = options.inner_steps;
  if (steps.empty()) steps.push_back(spec.inner().test_steps());
  const std::string what =
      absl::StrCat(spec.algorithm(), ", ", spec.model().kind(), " on ", spec.tasks().family());

  if (options.episodes.empty()) {
    const bool validation = options.split == "validation";
    const int64_t tasks = options.tasks > 0 ? options.tasks
                          : validation      ? spec.validation_tasks()
                                            : spec.test_tasks();
    report.header =
        absl::StrCat("checkpoint ", options.checkpoint, " (", what, "): ", tasks, " tasks of the ",
                     validation ? "validation" : "test", " split, seed ", spec.seed());
    for (int s : steps) {
      EvaluationRun run;
      run.inner_steps = s;
      ASSIGN_OR_RETURN(run.summary, meta::EvaluateTasks(
                                        *job.learner, *job.family, params, spec.seed(),
                                        validation ? meta::Split::kValidation : meta::Split::kTest,
                                        /*round=*/0, tasks, s, spec.meta_batch_size(), job.dtype));
      report.runs.push_back(std::move(run));
    }
    return report;
  }

  const data::EpisodeSet* loaded = &*episodes;
  std::vector<meta::TaskBatch> batches;
  for (const data::Episode& episode : loaded->episodes) {
    ASSIGN_OR_RETURN(meta::TaskBatch batch, EpisodeToTask(job, episode));
    batches.push_back(std::move(batch));
  }
  report.header = absl::StrCat("checkpoint ", options.checkpoint, " (", what, "): ", batches.size(),
                               " episodes from ", options.episodes);
  for (int s : steps) {
    EvaluationRun run;
    run.inner_steps = s;
    meta::EvaluationAccumulator acc;
    for (size_t e = 0; e < batches.size(); ++e) {
      absl::StatusOr<meta::Adaptation> adaptation = job.learner->Evaluate(params, batches[e], s);
      if (!adaptation.ok()) {
        return absl::Status(adaptation.status().code(),
                            absl::StrCat("episode '", loaded->episodes[e].name,
                                         "': ", adaptation.status().message()));
      }
      acc.Add(*adaptation);
      EpisodeScore score;
      score.name = loaded->episodes[e].name;
      score.ways = static_cast<int64_t>(loaded->episodes[e].support.class_names.size());
      score.support = batches[e].support_x.size(1);
      score.query = batches[e].query_x.size(1);
      score.loss_before = At(adaptation->loss_before);
      score.loss_after = At(adaptation->loss_after);
      score.accuracy_before = At(adaptation->accuracy_before);
      score.accuracy_after = At(adaptation->accuracy_after);
      run.episodes.push_back(std::move(score));
    }
    run.summary = acc.Summary();
    report.runs.push_back(std::move(run));
  }
  return report;
}

std::string FormatReport(const EvaluationReport& report, bool verbose) {
  std::string out = absl::StrCat(report.header, "\n");
  for (const std::string& note : report.notes) absl::StrAppend(&out, "note: ", note, "\n");
  for (const EvaluationRun& run : report.runs) {
    const bool episodes = !run.episodes.empty();
    absl::StrAppend(
        &out,
        !report.inner_loop     ? std::string("no inner loop")
        : run.inner_steps == 1 ? std::string("1 inner step")
                               : absl::StrCat(run.inner_steps, " inner steps"),
        ", mean ± 95% CI over ", run.summary.loss_after.n, episodes ? " episodes" : " tasks", ":\n",
        FormatEvaluation(meta::ToEvaluationResult(run.summary, run.inner_steps), "  "), "\n");
    if (!verbose) continue;
    for (const EpisodeScore& e : run.episodes) {
      absl::StrAppend(
          &out, absl::StrFormat("    %s: %d-way, %d support, %d query: loss %.4f -> "
                                "%.4f, accuracy %.2f%% -> %.2f%%\n",
                                e.name, e.ways, e.support, e.query, e.loss_before, e.loss_after,
                                100 * e.accuracy_before, 100 * e.accuracy_after));
    }
  }
  return out;
}

}  // namespace metatrain::metactl
