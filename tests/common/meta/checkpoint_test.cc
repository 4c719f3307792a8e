#include "common/meta/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/meta/model.h"
#include "common/meta/rng.h"
#include "tests/common/meta/python_util.h"

namespace metatrain::meta {
namespace {

using ::testing::HasSubstr;

// The sinusoid net: nn.Sequential(Linear(1, 40), ReLU, Linear(40, 40), ReLU, Linear(40, 1)).
std::unique_ptr<Model> SinusoidNet() {
  v1::ModelSpec spec;
  spec.set_kind("mlp");
  spec.add_hidden_sizes(40);
  spec.add_hidden_sizes(40);
  auto model = MakeModel(spec, {1}, 1);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

constexpr char kPythonNet[] =
    "import torch\n"
    "class Net(torch.nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.layers = torch.nn.Sequential(torch.nn.Linear(1, 40), torch.nn.ReLU(),\n"
    "            torch.nn.Linear(40, 40), torch.nn.ReLU(), torch.nn.Linear(40, 1))\n"
    "    def forward(self, x):\n"
    "        return self.layers(x)\n"
    "net = Net()\n";

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = metatrain::testing::TempDir(); }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
};

TEST_F(CheckpointTest, RoundTripIsExact) {
  auto model = SinusoidNet();
  Rng rng(7);
  const TensorList params = model->Initialize(rng, at::kFloat);
  const std::string path = dir_ + "/ckpt.pt";
  ASSERT_TRUE(SaveStateDict(path, ToStateDict(model->param_specs(), params)).ok());
  auto state = LoadStateDict(path);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->size(), params.size());
  auto back = FromStateDict(model->param_specs(), *state, at::kFloat);
  ASSERT_TRUE(back.ok()) << back.status();
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(at::equal((*back)[i], params[i]));
  // No temporary files are left behind.
  int files = 0;
  FILE* ls = popen(("ls " + dir_).c_str(), "r");
  char line[512];
  while (fgets(line, sizeof line, ls)) ++files;
  pclose(ls);
  EXPECT_EQ(files, 1);
}

TEST_F(CheckpointTest, WrongShapeMissingAndExtraKeysAreClearErrors) {
  auto model = SinusoidNet();
  Rng rng(7);
  StateDict state = ToStateDict(model->param_specs(), model->Initialize(rng, at::kFloat));
  StateDict wrong = state;
  wrong["layers.0.weight"] = at::zeros({40, 2});
  auto r = FromStateDict(model->param_specs(), wrong, at::kFloat);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("layers.0.weight: checkpoint has [40, 2], model needs [40, 1]"));
  StateDict missing = state;
  missing.erase("layers.4.bias");
  r = FromStateDict(model->param_specs(), missing, at::kFloat);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("no 'layers.4.bias'"));
  StateDict extra = state;
  extra["layers.9.weight"] = at::zeros({2});
  EXPECT_FALSE(FromStateDict(model->param_specs(), extra, at::kFloat).ok());
  EXPECT_TRUE(FromStateDict(model->param_specs(), extra, at::kFloat, true).ok());
  auto doubles = FromStateDict(model->param_specs(), state, at::kDouble);
  ASSERT_TRUE(doubles.ok());
  EXPECT_EQ((*doubles)[0].scalar_type(), at::kDouble);
}

TEST_F(CheckpointTest, BadFilesAreErrorsNotCrashes) {
  EXPECT_EQ(LoadStateDict(dir_ + "/missing.pt").status().code(), absl::StatusCode::kNotFound);
  std::ofstream(dir_ + "/junk.pt") << "definitely not a zip";
  auto junk = LoadStateDict(dir_ + "/junk.pt");
  EXPECT_EQ(junk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(junk.status().message()), HasSubstr("junk.pt"));
  EXPECT_FALSE(WriteFileAtomically("/nonexistent-dir/x.pt", "abc").ok());
  EXPECT_FALSE(DeserializeStateDict("").ok());
}

// Under make test-asan this caught LibTorch reading past the buffer of a truncated file
// (torch::pickle_load's unchecked reader); checkpoint.cc now reads through a bounded one.
TEST_F(CheckpointTest, TruncatedFilesAreRefusedAtEveryLength) {
  StateDict state = {{"w", at::arange(12, at::kFloat).reshape({3, 4})}};
  auto bytes = SerializeStateDict(state);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  for (size_t n = 0; n < bytes->size(); n += 7) {
    auto loaded = DeserializeStateDict(bytes->substr(0, n));
    ASSERT_FALSE(loaded.ok()) << n;
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << n;
  }
  EXPECT_TRUE(DeserializeStateDict(*bytes).ok());
}

TEST_F(CheckpointTest, PythonLoadsOurCheckpointIntoAModule) {
  if (!metatrain::testing::PythonHasTorch()) {
    GTEST_SKIP() << "/usr/bin/python3 has no torch (install python3-torch)";
  }
  auto model = SinusoidNet();
  Rng rng(11);
  const TensorList params = model->Initialize(rng, at::kFloat);
  const std::string path = dir_ + "/ours.pt";
  ASSERT_TRUE(SaveStateDict(path, ToStateDict(model->param_specs(), params)).ok());
  // Our forward on a few inputs vs the PyTorch module loaded from our file.
  at::Tensor x = at::linspace(-5, 5, 7).reshape({1, 7, 1});
  TensorList batched;
  for (const auto& p : params) batched.push_back(p.unsqueeze(0));
  at::Tensor ours = model->Forward(batched, x).reshape({-1});
  int rc = 0;
  const std::string out = metatrain::testing::RunPython(
      std::string(kPythonNet) + "state = torch.load('" + path + "')\n" +
          "assert isinstance(state, dict), type(state)\n"
          "assert all(isinstance(v, torch.Tensor) for v in state.values())\n"
          "net.load_state_dict(state)\n"
          "y = net(torch.linspace(-5, 5, 7).reshape(7, 1)).reshape(-1)\n"
          "print(' '.join(repr(v) for v in y.tolist()))\n",
      &rc);
  ASSERT_EQ(rc, 0) << out;
  std::istringstream in(out);
  for (int64_t i = 0; i < 7; ++i) {
    double v;
    ASSERT_TRUE(in >> v) << out;
    EXPECT_NEAR(ours[i].item<double>(), v, 1e-5);
  }
}

TEST_F(CheckpointTest, WeReadPythonStateDicts) {
  if (!metatrain::testing::PythonHasTorch()) {
    GTEST_SKIP() << "/usr/bin/python3 has no torch (install python3-torch)";
  }
  const std::string path = dir_ + "/theirs.pt";
  int rc = 0;
  const std::string out = metatrain::testing::RunPython(
      std::string(kPythonNet) + "torch.manual_seed(0)\nnet = Net()\n" +
          "torch.save(dict(net.state_dict()), '" + path + "')\n" +
          "torch.save(net.state_dict(), '" + path + ".ordered')\n" +
          "print(repr(net.layers[2].weight[3, 5].item()))\n",
      &rc);
  ASSERT_EQ(rc, 0) << out;
  auto state = LoadStateDict(path);
  ASSERT_TRUE(state.ok()) << state.status();
  auto model = SinusoidNet();
  auto params = FromStateDict(model->param_specs(), *state, at::kFloat);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_DOUBLE_EQ((*params)[2][3][5].item<double>(), std::stod(out));
  // A raw state_dict() is an OrderedDict, which LibTorch cannot unpickle: clear advice.
  auto ordered = LoadStateDict(path + ".ordered");
  ASSERT_FALSE(ordered.ok());
  EXPECT_EQ(ordered.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ordered.status().message()), HasSubstr("dict(model.state_dict())"));
}

}  // namespace
}  // namespace metatrain::meta
