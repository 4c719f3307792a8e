// `metactl evaluate`: a checkpoint evaluated locally must reproduce the job's own meta-test,
// user episodes must be preprocessed exactly as the job's family preprocesses its images,
// and every bad input is a one-line error with metactl's exit codes.

#include "tools/metactl/evaluate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/data/image_dataset.h"
#include "common/data/png_decoder.h"
#include "common/data/zip_reader.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/meta/model.h"
#include "common/meta/rng.h"
#include "common/meta/trainer.h"
#include "tests/common/data/data_test_util.h"
#include "tests/e2e/process.h"
#include "tests/testing/test_data.h"

namespace metatrain::metactl {
namespace {

namespace fs = std::filesystem;
using data::testing::ScratchDir;
using data::testing::TestCacheDir;
using ::metatrain::testing::OmniglotDir;
using ::testing::HasSubstr;
using ::testing::StartsWith;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// A tiny sinusoid job (seconds to train).
std::string SinusoidJob(const std::string& algorithm, const std::string& hidden = "[16, 16]",
                        int steps = 15) {
  return absl::StrCat(R"({"algorithm": ")", algorithm, R"(",
    "model": {"kind": "mlp", "hidden_sizes": )",
                      hidden, R"(},
    "tasks": {"family": "sinusoid", "shots": 10},
    "meta_batch_size": 4, "steps": )",
                      steps, R"(, "test_tasks": 12, "seed": 7,
    "inner": {"test_steps": 3}})");
}

meta::JobContext MakeJob(const std::string& json) {
  auto spec = meta::ParseJobSpec(json);
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto normalized = meta::NormalizeJobSpec(*spec);
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  auto job = meta::MakeJobContext(*normalized);
  EXPECT_TRUE(job.ok()) << job.status();
  return std::move(*job);
}

void ExpectSameSummary(const meta::EvaluationSummary& a, const meta::EvaluationSummary& b) {
  EXPECT_EQ(a.loss_before.n, b.loss_before.n);
  EXPECT_EQ(a.loss_before.mean, b.loss_before.mean);
  EXPECT_EQ(a.loss_after.mean, b.loss_after.mean);
  EXPECT_EQ(a.loss_after.ci95, b.loss_after.ci95);
  EXPECT_EQ(a.accuracy_after.n, b.accuracy_after.n);
  EXPECT_EQ(a.accuracy_after.mean, b.accuracy_after.mean);
}

class TrainedCheckpointTest : public ::testing::TestWithParam<std::string> {};

// The headline promise: evaluating a job's checkpoint reproduces the job's meta-test.
TEST_P(TrainedCheckpointTest, ReproducesTheJobsOwnMetaTest) {
  const std::string dir = ScratchDir("evaluate-sinusoid");
  const std::string json = SinusoidJob(GetParam());
  meta::JobContext job = MakeJob(json);
  auto trained = meta::Train(job);
  ASSERT_TRUE(trained.ok()) << trained.status();
  const std::string checkpoint = dir + "/model.pt";
  ASSERT_TRUE(meta::SaveStateDict(checkpoint, meta::ToStateDict(job.learner->meta_param_specs(),
                                                                trained->best_params))
                  .ok());
  WriteFile(dir + "/job.json", json);

  EvaluateOptions options;
  options.checkpoint = checkpoint;
  options.job = dir + "/job.json";
  auto report = RunEvaluation(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->runs.size(), 1u);
  EXPECT_EQ(report->runs[0].inner_steps, 3);
  EXPECT_TRUE(report->notes.empty());
  ExpectSameSummary(report->runs[0].summary, trained->test);

  // Another seed samples other tasks.
  options.seed = 8;
  auto other = RunEvaluation(options);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_NE(other->runs[0].summary.loss_before.mean, trained->test.loss_before.mean);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, TrainedCheckpointTest,
                         ::testing::Values("maml", "meta_sgd", "reptile", "meta_lstm"));

TEST(EvaluateTest, SeveralInnerStepCountsOnTheSameTasks) {
  const std::string dir = ScratchDir("evaluate-steps");
  // Trained long enough that adaptation helps on held-out sinusoids.
  const std::string json = SinusoidJob("maml", "[40, 40]", 300);
  meta::JobContext job = MakeJob(json);
  auto trained = meta::Train(job);
  ASSERT_TRUE(trained.ok()) << trained.status();
  ASSERT_TRUE(meta::SaveStateDict(dir + "/m.pt", meta::ToStateDict(job.learner->meta_param_specs(),
                                                                   trained->best_params))
                  .ok());
  WriteFile(dir + "/job.json", json);
  EvaluateFlags flags;
  flags.arguments = {dir + "/m.pt"};
  flags.job = dir + "/job.json";
  flags.inner_steps = "1,10";
  flags.tasks = 20;
  auto options = MakeEvaluateOptions(flags);
  ASSERT_TRUE(options.ok()) << options.status();
  auto report = RunEvaluation(*options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->runs.size(), 2u);
  const auto& one = report->runs[0].summary;
  const auto& ten = report->runs[1].summary;
  EXPECT_EQ(one.loss_after.n, 20);
  // Same tasks: the same loss before adaptation; more steps fit the sinusoid better.
  EXPECT_EQ(one.loss_before.mean, ten.loss_before.mean);
  EXPECT_LT(ten.loss_after.mean, one.loss_after.mean);
  EXPECT_LT(one.loss_after.mean, one.loss_before.mean);
  const std::string text = FormatReport(*report, false);
  EXPECT_THAT(text, HasSubstr("1 inner step, mean ± 95% CI over 20 tasks:\n  loss      before "));
  EXPECT_THAT(text, HasSubstr("10 inner steps, mean ± 95% CI over 20 tasks:"));
}

TEST(EvaluateTest, MetaSgdCheckpointWithoutRatesAdaptsWithInnerLr) {
  const std::string dir = ScratchDir("evaluate-metasgd");
  meta::JobContext job = MakeJob(SinusoidJob("meta_sgd"));
  auto init = meta::InitialMetaParams(job);
  ASSERT_TRUE(init.ok());
  // Only the model's tensors, as a PyTorch user would save model.state_dict().
  meta::StateDict model_only;
  for (const auto& [name, tensor] : meta::ToStateDict(job.learner->meta_param_specs(), *init)) {
    if (name.rfind("lr.", 0) != 0) model_only[name] = tensor;
  }
  ASSERT_TRUE(meta::SaveStateDict(dir + "/model.pt", model_only).ok());
  WriteFile(dir + "/job.json", SinusoidJob("meta_sgd"));
  EvaluateOptions options;
  options.checkpoint = dir + "/model.pt";
  options.job = dir + "/job.json";
  auto report = RunEvaluation(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->notes.size(), 1u);
  EXPECT_THAT(report->notes[0], HasSubstr("inner.lr = 0.01"));
  // Initial rates are inner.lr, so this is the meta-test of the initial parameters.
  auto expected = meta::MetaTest(job, *init);
  ASSERT_TRUE(expected.ok());
  ExpectSameSummary(report->runs[0].summary, *expected);

  // A full Meta-SGD checkpoint under a MAML job: the extra rates are named, with a hint.
  ASSERT_TRUE(meta::SaveStateDict(dir + "/sgd.pt",
                                  meta::ToStateDict(job.learner->meta_param_specs(), *init))
                  .ok());
  WriteFile(dir + "/maml.json", SinusoidJob("maml"));
  options.checkpoint = dir + "/sgd.pt";
  options.job = dir + "/maml.json";
  auto mismatch = RunEvaluation(options);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatch.status().message(), HasSubstr("'lr."));
  EXPECT_THAT(mismatch.status().message(), HasSubstr("meta_sgd"));
}

TEST(EvaluateTest, CheckpointOfAnotherModelNamesTheTensor) {
  const std::string dir = ScratchDir("evaluate-mismatch");
  meta::JobContext small = MakeJob(SinusoidJob("maml", "[8]"));
  auto init = meta::InitialMetaParams(small);
  ASSERT_TRUE(init.ok());
  ASSERT_TRUE(meta::SaveStateDict(dir + "/small.pt",
                                  meta::ToStateDict(small.learner->meta_param_specs(), *init))
                  .ok());
  WriteFile(dir + "/job.json", SinusoidJob("maml"));
  EvaluateOptions options;
  options.checkpoint = dir + "/small.pt";
  options.job = dir + "/job.json";
  auto report = RunEvaluation(options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string first = small.learner->meta_param_specs()[0].name;
  EXPECT_THAT(report.status().message(), HasSubstr("does not match the job's model"));
  EXPECT_THAT(report.status().message(), HasSubstr(first + ": checkpoint has [8, 1]"));
}

TEST(EvaluateTest, MetaLstmCheckpointWithAMamlJobSaysWhichAlgorithm) {
  const std::string dir = ScratchDir("evaluate-meta-lstm-mismatch");
  meta::JobContext lstm = MakeJob(SinusoidJob("meta_lstm"));
  auto init = meta::InitialMetaParams(lstm);
  ASSERT_TRUE(init.ok());
  ASSERT_TRUE(meta::SaveStateDict(dir + "/lstm.pt",
                                  meta::ToStateDict(lstm.learner->meta_param_specs(), *init))
                  .ok());
  WriteFile(dir + "/job.json", SinusoidJob("maml"));
  EvaluateOptions options;
  options.checkpoint = dir + "/lstm.pt";
  options.job = dir + "/job.json";
  auto report = RunEvaluation(options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(report.status().message(), HasSubstr("\"algorithm\": \"meta_lstm\""));
}

// The checks on evaluate's flags; malformed values (--seed -1, --tasks x) and unknown
// flags are the command line's (MetactlEvaluateTest below, tests/e2e/cli_test.cc).
TEST(EvaluateTest, MakeOptionsRejectsBadFlags) {
  auto make = [](std::vector<std::string> arguments, std::string job,
                 void (*edit)(EvaluateFlags&) = nullptr) {
    EvaluateFlags flags;
    flags.arguments = std::move(arguments);
    flags.job = std::move(job);
    if (edit != nullptr) edit(flags);
    return MakeEvaluateOptions(flags);
  };
  EXPECT_FALSE(make({"m.pt"}, "").ok());                // no --job
  EXPECT_FALSE(make({}, "j.json").ok());                // no checkpoint
  EXPECT_FALSE(make({"a.pt", "b.pt"}, "j.json").ok());  // two checkpoints
  EXPECT_FALSE(make({"m.pt"}, "j", [](EvaluateFlags& f) { f.tasks = 0; }).ok());
  EXPECT_FALSE(make({"m.pt"}, "j", [](EvaluateFlags& f) { f.inner_steps = "1,x"; }).ok());
  EXPECT_FALSE(make({"m.pt"}, "j", [](EvaluateFlags& f) { f.split = "train"; }).ok());
  EXPECT_FALSE(make({"m.pt"}, "j", [](EvaluateFlags& f) {
                 f.episodes = "d";
                 f.tasks = 3;
               }).ok());
  auto bad = make({"m.pt"}, "j", [](EvaluateFlags& f) { f.split = "train"; });
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("--split"));
  auto ok = make({"m.pt"}, "j", [](EvaluateFlags& f) {
    f.split = "validation";
    f.seed = 5;
  });
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->checkpoint, "m.pt");
  EXPECT_EQ(ok->job, "j");
  EXPECT_EQ(ok->split, "validation");
  EXPECT_EQ(*ok->seed, 5u);
}

// ---- Episodes ----

constexpr char kSyntheticJob[] = R"({"algorithm": "maml",
  "model": {"kind": "mlp", "hidden_sizes": [32]},
  "tasks": {"family": "synthetic_images", "ways": 3, "shots": 2, "query_size": 4},
  "meta_batch_size": 2, "steps": 1, "test_tasks": 4, "seed": 11, "inner": {"test_steps": 2}})";

// Writes task `t` of `batch` (x in [0, 1]) as an episode folder: class k -> "class<k>",
// pixel bytes round(255 x), inverted when `invert` (Omniglot PNGs have dark ink).
void WriteEpisode(const meta::TaskBatch& batch, int64_t t, const std::string& dir, bool invert) {
  for (const char* part : {"support", "query"}) {
    const bool support = std::string(part) == "support";
    at::Tensor x = (support ? batch.support_x : batch.query_x)[t].to(at::kDouble);
    at::Tensor y = (support ? batch.support_y : batch.query_y)[t];
    for (int64_t i = 0; i < x.size(0); ++i) {
      const std::string class_dir = absl::StrCat(dir, "/", part, "/class", y[i].item<int64_t>());
      fs::create_directories(class_dir);
      at::Tensor bytes = x[i].mul(255).round().clamp(0, 255).to(at::kByte).contiguous();
      if (invert) bytes = 255 - bytes;
      data::DecodedImage image;
      image.channels = x.size(1);
      image.height = x.size(2);
      image.width = x.size(3);
      image.pixels.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
      ASSERT_TRUE(data::WritePngFile(image, absl::StrFormat("%s/%03d.png", class_dir, i)).ok());
    }
  }
}

// An episode that holds exactly the family's test tasks scores exactly as those tasks do.
void ExpectEpisodesScoreAsTheTasks(const std::string& json, const std::string& scratch) {
  const std::string dir = ScratchDir(scratch);
  meta::JobContext job = MakeJob(json);
  auto params = meta::InitialMetaParams(job);
  ASSERT_TRUE(params.ok());
  ASSERT_TRUE(meta::SaveStateDict(dir + "/m.pt",
                                  meta::ToStateDict(job.learner->meta_param_specs(), *params))
                  .ok());
  WriteFile(dir + "/job.json", json);
  std::vector<meta::TaskKey> keys = {{meta::Split::kTest, 0, 0}, {meta::Split::kTest, 0, 1}};
  auto tasks = job.family->Sample(keys, job.dtype);
  ASSERT_TRUE(tasks.ok());
  WriteEpisode(*tasks, 0, dir + "/episodes/a", false);
  WriteEpisode(*tasks, 1, dir + "/episodes/b", false);

  EvaluateOptions options;
  options.checkpoint = dir + "/m.pt";
  options.job = dir + "/job.json";
  options.episodes = dir + "/episodes";
  auto report = RunEvaluation(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->runs.size(), 1u);
  const auto& episodes = report->runs[0].episodes;
  ASSERT_EQ(episodes.size(), 2u);
  for (int64_t t = 0; t < 2; ++t) {
    meta::TaskBatch one{tasks->support_x.narrow(0, t, 1), tasks->support_y.narrow(0, t, 1),
                        tasks->query_x.narrow(0, t, 1), tasks->query_y.narrow(0, t, 1)};
    auto expected = job.learner->Evaluate(*params, one, 2);
    ASSERT_TRUE(expected.ok());
    EXPECT_EQ(episodes[t].ways, 3);
    EXPECT_EQ(episodes[t].support, 6);
    EXPECT_EQ(episodes[t].query, 12);
    EXPECT_EQ(episodes[t].loss_before, expected->loss_before.item<double>());
    EXPECT_EQ(episodes[t].loss_after, expected->loss_after.item<double>());
    EXPECT_EQ(episodes[t].accuracy_after, expected->accuracy_after.item<double>());
  }
  EXPECT_THAT(FormatReport(*report, true), HasSubstr("    b: 3-way, 6 support, 12 query: loss "));
}

TEST(EvaluateEpisodesTest, EpisodesOfSampledTasksScoreAsTheTasks) {
  ExpectEpisodesScoreAsTheTasks(kSyntheticJob, "evaluate-episodes");
}

// Meta-LSTM checkpoints (initialisation + meta-learner) score user episodes the same way.
TEST(EvaluateEpisodesTest, MetaLstmEpisodesScoreAsTheTasks) {
  ExpectEpisodesScoreAsTheTasks(absl::StrReplaceAll(kSyntheticJob, {{"\"maml\"", "\"meta_lstm\""}}),
                                "evaluate-episodes-meta-lstm");
}

TEST(EvaluateEpisodesTest, EpisodeThatDoesNotFitTheModelIsNamed) {
  const std::string dir = ScratchDir("evaluate-episodes-bad");
  meta::JobContext job = MakeJob(kSyntheticJob);
  auto params = meta::InitialMetaParams(job);
  ASSERT_TRUE(params.ok());
  ASSERT_TRUE(meta::SaveStateDict(dir + "/m.pt",
                                  meta::ToStateDict(job.learner->meta_param_specs(), *params))
                  .ok());
  WriteFile(dir + "/job.json", kSyntheticJob);
  auto tasks =
      job.family->Sample(std::vector<meta::TaskKey>{{meta::Split::kTest, 0, 0}}, job.dtype);
  ASSERT_TRUE(tasks.ok());
  WriteEpisode(*tasks, 0, dir + "/ways/good", false);
  WriteEpisode(*tasks, 0, dir + "/ways/two_way", false);
  fs::remove_all(dir + "/ways/two_way/support/class2");
  fs::remove_all(dir + "/ways/two_way/query/class2");
  EvaluateOptions options;
  options.checkpoint = dir + "/m.pt";
  options.job = dir + "/job.json";
  options.episodes = dir + "/ways";
  auto report = RunEvaluation(options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(report.status().message(), HasSubstr("episode 'two_way' has 2 classes"));
  EXPECT_THAT(report.status().message(), HasSubstr("3-way"));

  // A colour image in a gray model's episode.
  WriteEpisode(*tasks, 0, dir + "/colour/gray_one", false);
  WriteEpisode(*tasks, 0, dir + "/colour/red_one", false);
  data::DecodedImage red;
  red.channels = 3;
  red.height = red.width = 28;
  red.pixels.assign(3 * 28 * 28, 0);
  std::fill(red.pixels.begin(), red.pixels.begin() + 28 * 28, 255);
  ASSERT_TRUE(data::WritePngFile(red, dir + "/colour/red_one/query/class1/red.png").ok());
  options.episodes = dir + "/colour";
  report = RunEvaluation(options);
  ASSERT_FALSE(report.ok());
  EXPECT_THAT(report.status().message(), HasSubstr("episode 'red_one': query images have colour"));

  // A regression job has no image convention.
  WriteFile(dir + "/sinusoid.json", SinusoidJob("maml"));
  meta::JobContext sinusoid = MakeJob(SinusoidJob("maml"));
  auto sin_params = meta::InitialMetaParams(sinusoid);
  ASSERT_TRUE(
      meta::SaveStateDict(dir + "/s.pt",
                          meta::ToStateDict(sinusoid.learner->meta_param_specs(), *sin_params))
          .ok());
  options.checkpoint = dir + "/s.pt";
  options.job = dir + "/sinusoid.json";
  options.episodes = dir + "/ways";
  report = RunEvaluation(options);
  ASSERT_FALSE(report.ok());
  EXPECT_THAT(report.status().message(), HasSubstr("tasks.family is 'sinusoid'"));
}

// An image_folder model trained on colour images evaluates gray episodes (expanded to
// RGB) without its training folder: the input channels come from the checkpoint.
TEST(EvaluateEpisodesTest, ImageFolderChannelsComeFromTheCheckpoint) {
  const std::string dir = ScratchDir("evaluate-image-folder");
  const std::string json = absl::StrCat(R"({"algorithm": "maml",
    "model": {"kind": "mlp", "hidden_sizes": [8]},
    "tasks": {"family": "image_folder", "data_dir": ")",
                                        dir, R"(/no-training-folder",
              "ways": 2, "shots": 1, "query_size": 1, "image_size": 8},
    "steps": 1, "seed": 1})");
  WriteFile(dir + "/job.json", json);
  for (int k = 0; k < 2; ++k) {
    for (const char* part : {"support", "query"}) {
      const std::string class_dir = absl::StrCat(dir, "/episodes/e/", part, "/c", k);
      fs::create_directories(class_dir);
      ASSERT_TRUE(data::WritePngFile(data::testing::PatternImage(1, 8, 8, 2 * k + (*part == 'q')),
                                     class_dir + "/0.png")
                      .ok());
    }
  }
  auto spec = meta::NormalizeJobSpec(*meta::ParseJobSpec(json));
  ASSERT_TRUE(spec.ok()) << spec.status();
  for (int64_t channels : {3, 1}) {
    auto model = meta::MakeModel(spec->model(), {channels, 8, 8}, 2);
    ASSERT_TRUE(model.ok()) << model.status();
    const std::string checkpoint = absl::StrCat(dir, "/rgb", channels, ".pt");
    meta::Rng rng(1);
    ASSERT_TRUE(
        meta::SaveStateDict(checkpoint, meta::ToStateDict((*model)->param_specs(),
                                                          (*model)->Initialize(rng, at::kFloat)))
            .ok());
    EvaluateOptions options;
    options.checkpoint = checkpoint;
    options.job = dir + "/job.json";
    options.episodes = dir + "/episodes";
    auto report = RunEvaluation(options);
    ASSERT_TRUE(report.ok()) << channels << " channels: " << report.status();
    EXPECT_EQ(report->runs[0].summary.accuracy_after.n, 1) << channels << " channels";
  }
}

// Real Omniglot PNGs, as a user would copy them out of the archive, must become exactly the
// tensors the omniglot family trains on (decoded, resized, inverted to 255 = ink, / 255).
// Forgetting the inversion, or scaling differently, fails here.
TEST(EvaluateEpisodesTest, RealOmniglotPngsArePreprocessedLikeTheFamily) {
  SKIP_WITHOUT_OMNIGLOT();
  setenv("METATRAIN_CACHE_DIR", TestCacheDir().c_str(), 1);
  const std::string dir = ScratchDir("evaluate-omniglot");
  const std::string json = absl::StrCat(R"({"algorithm": "maml",
    "model": {"kind": "mlp", "hidden_sizes": [16]},
    "tasks": {"family": "omniglot", "data_dir": ")",
                                        OmniglotDir(), R"(", "ways": 2, "shots": 1,
              "split": "background_evaluation"},
    "steps": 1, "seed": 1})");
  meta::JobContext job = MakeJob(json);
  ASSERT_NE(job.family, nullptr);

  // Two characters of images_evaluation, 3 drawings each: 1 support, 2 query.
  auto zip = data::ZipReader::Open(OmniglotDir() + "/images_evaluation.zip");
  ASSERT_TRUE(zip.ok()) << zip.status();
  const std::vector<std::string> characters = {"images_evaluation/Angelic/character01",
                                               "images_evaluation/Angelic/character02"};
  std::map<std::string, std::vector<const data::ZipReader::Entry*>> drawings;
  for (const auto& entry : (*zip)->entries()) {
    for (const std::string& c : characters) {
      if (entry.name.rfind(c + "/", 0) == 0 && entry.name.size() > c.size() + 5 &&
          entry.name.substr(entry.name.size() - 4) == ".png") {
        drawings[c].push_back(&entry);
      }
    }
  }
  std::vector<std::vector<std::string>> bytes_of(characters.size());
  for (size_t k = 0; k < characters.size(); ++k) {
    ASSERT_GE(drawings[characters[k]].size(), 3u) << characters[k];
    for (int i = 0; i < 3; ++i) {
      auto bytes = (*zip)->Read(*drawings[characters[k]][i]);
      ASSERT_TRUE(bytes.ok());
      const std::string part = i == 0 ? "support" : "query";
      const std::string class_dir = absl::StrCat(dir, "/episodes/e1/", part, "/c", k);
      fs::create_directories(class_dir);
      std::ofstream(absl::StrCat(class_dir, "/", i, ".png"), std::ios::binary) << *bytes;
    }
  }
  auto loaded = data::LoadEpisodes(dir + "/episodes", 28);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto task = EpisodeToTask(job, loaded->episodes[0]);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->support_x.sizes(), (std::vector<int64_t>{1, 2, 1, 28, 28}));
  EXPECT_EQ(task->query_x.sizes(), (std::vector<int64_t>{1, 4, 1, 28, 28}));

  // The family's own pixels for the same characters.
  auto spec = meta::ParseJobSpec(json);
  auto normalized = meta::NormalizeJobSpec(*spec);
  ASSERT_TRUE(normalized.ok());
  auto dataset = data::LoadFewShotDataset(normalized->tasks(), normalized->seed());
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  const auto& im = dataset->images;
  for (size_t k = 0; k < characters.size(); ++k) {
    const auto it = std::find(im.class_names.begin(), im.class_names.end(), characters[k]);
    ASSERT_NE(it, im.class_names.end()) << characters[k];
    const auto& examples = dataset->examples_by_class[it - im.class_names.begin()];
    ASSERT_GE(examples.size(), 3u);
    // Every episode image is one of the family's images of that character, exactly.
    std::vector<at::Tensor> mine = {task->support_x[0][k], task->query_x[0][2 * k],
                                    task->query_x[0][2 * k + 1]};
    for (const at::Tensor& image : mine) {
      bool found = false;
      for (int64_t index : examples) {
        at::Tensor family =
            at::from_blob(const_cast<uint8_t*>(im.pixels.data()) + index * im.image_bytes(),
                          {1, 28, 28}, at::TensorOptions().dtype(at::kByte))
                .to(at::kFloat)
                .div_(255.0);
        found = found || at::equal(family, image);
      }
      EXPECT_TRUE(found) << characters[k];
      // Ink is bright, paper dark: most of a drawing is paper.
      EXPECT_LT(image.mean().item<double>(), 0.3);
    }
  }

  // Evaluating episodes needs the checkpoint and the episodes, not the training data:
  // the same job with its data_dir gone gives the same scores.
  auto params = meta::InitialMetaParams(job);
  ASSERT_TRUE(params.ok());
  ASSERT_TRUE(meta::SaveStateDict(dir + "/m.pt",
                                  meta::ToStateDict(job.learner->meta_param_specs(), *params))
                  .ok());
  WriteFile(dir + "/with_data.json", json);
  WriteFile(dir + "/without_data.json",
            absl::StrReplaceAll(json, {{OmniglotDir(), dir + "/no-such-omniglot"}}));
  EvaluateOptions options;
  options.checkpoint = dir + "/m.pt";
  options.episodes = dir + "/episodes";
  options.job = dir + "/with_data.json";
  auto with_data = RunEvaluation(options);
  ASSERT_TRUE(with_data.ok()) << with_data.status();
  options.job = dir + "/without_data.json";
  auto without_data = RunEvaluation(options);
  ASSERT_TRUE(without_data.ok()) << without_data.status();
  ExpectSameSummary(without_data->runs[0].summary, with_data->runs[0].summary);
  EXPECT_EQ(without_data->runs[0].summary.loss_after.n, 1);
}

// ---- The metactl binary ----

std::string Metactl() { return e2e::BinaryPath("tools/metactl/metactl"); }

e2e::CommandResult RunMetactl(std::vector<std::string> args) {
  args.insert(args.begin(), Metactl());
  auto result = e2e::RunCommand(args, absl::Seconds(120));
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : e2e::CommandResult{};
}

TEST(MetactlEvaluateTest, PrintsOneBlockPerStepCountAndFailsInOneLine) {
  const std::string dir = ScratchDir("evaluate-cli");
  meta::JobContext job = MakeJob(SinusoidJob("maml"));
  auto init = meta::InitialMetaParams(job);
  ASSERT_TRUE(init.ok());
  ASSERT_TRUE(
      meta::SaveStateDict(dir + "/m.pt", meta::ToStateDict(job.learner->meta_param_specs(), *init))
          .ok());
  WriteFile(dir + "/job.json", SinusoidJob("maml"));

  // No coordinator anywhere: evaluate is local.
  e2e::CommandResult ok =
      RunMetactl({"--coordinator", "127.0.0.1:1", "evaluate", dir + "/m.pt", "--job",
                  dir + "/job.json", "--inner_steps", "1,10", "--tasks", "5"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, StartsWith(absl::StrCat("checkpoint ", dir,
                                              "/m.pt (maml, mlp on sinusoid): "
                                              "5 tasks of the test split, seed 7\n")));
  EXPECT_THAT(ok.out,
              HasSubstr("\n1 inner step, mean ± 95% CI over 5 tasks:\n  loss      before "));
  EXPECT_THAT(ok.out, HasSubstr("\n10 inner steps, mean ± 95% CI over 5 tasks:\n"));

  e2e::CommandResult missing =
      RunMetactl({"evaluate", dir + "/nope.pt", "--job", dir + "/job.json"});
  EXPECT_EQ(missing.exit_code, 3);
  EXPECT_THAT(missing.err, StartsWith("metactl: NOT_FOUND: "));
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1) << missing.err;

  WriteFile(dir + "/corrupt.pt", "not a zip at all");
  e2e::CommandResult corrupt =
      RunMetactl({"evaluate", dir + "/corrupt.pt", "--job", dir + "/job.json"});
  EXPECT_EQ(corrupt.exit_code, 2);
  EXPECT_THAT(corrupt.err, StartsWith("metactl: INVALID_ARGUMENT: "));
  EXPECT_THAT(corrupt.err, HasSubstr("corrupt.pt"));
  EXPECT_EQ(std::count(corrupt.err.begin(), corrupt.err.end(), '\n'), 1) << corrupt.err;

  e2e::CommandResult bad =
      RunMetactl({"evaluate", dir + "/m.pt", "--job", dir + "/job.json", "--inner_steps", "-1"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--inner_steps must be integers >= 0"));

  e2e::CommandResult no_job = RunMetactl({"evaluate", dir + "/m.pt", "--job", dir + "/none.json"});
  EXPECT_EQ(no_job.exit_code, 2);
  EXPECT_THAT(no_job.err, StartsWith("metactl: INVALID_ARGUMENT: --job: "));

  // What the command line itself refuses, each in one line naming the flag.
  for (const auto& [args, flag] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"evaluate", dir + "/m.pt", "--job", dir + "/job.json", "--seed", "-1"}, "--seed"},
           {{"evaluate", dir + "/m.pt", "--job", dir + "/job.json", "--tasks", "x"}, "--tasks"},
           {{"evaluate", dir + "/m.pt", "--job", dir + "/job.json", "--bogus"}, "--bogus"},
           {{"evaluate", dir + "/m.pt", "--job=" + dir + "/job.json", "--split", "train"},
            "--split"},
           {{"evaluate", dir + "/m.pt"}, "--job"}}) {
    e2e::CommandResult r = RunMetactl(args);
    EXPECT_EQ(r.exit_code, 2) << flag << ": " << r.err;
    EXPECT_THAT(r.err, StartsWith("metactl: INVALID_ARGUMENT: ")) << flag;
    EXPECT_THAT(r.err, HasSubstr(flag));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace metatrain::metactl
