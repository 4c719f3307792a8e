// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) with our own
// encoders, so every seed is what the product really sends or stores:
//   fuzz_make_seeds EXAMPLES_DIR CORPUS_DIR
// job_spec: each example spec, as JSON and in text format; tensor_codec and result_intake:
// chunk streams from EncodeTensors, valid ones and a few that must be refused; checkpoint:
// state dicts from SerializeStateDict, as whole files and as archive records (the layouts
// are those the targets' comments describe). The output is deterministic; README.md says
// when to rerun it.

#include <ATen/ATen.h>
#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/rpc/tensor_codec.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/delimited_message_util.h"
#include "metatrain/v1/worker_service.pb.h"

namespace metatrain {
namespace {

namespace fs = std::filesystem;

void Write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

template <typename Message>
void AppendDelimited(std::string& out, const Message& message) {
  std::ostringstream stream;
  google::protobuf::util::SerializeDelimitedToOstream(message, &stream);
  out += stream.str();
}

template <typename T>
T Check(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::fprintf(stderr, "%s\n", value.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(value);
}

meta::TensorList Tensors(const std::vector<meta::ParamSpec>& specs, at::ScalarType dtype) {
  meta::TensorList out;
  double start = 0.25;
  for (const auto& spec : specs) {
    const int64_t n = meta::NumElements(spec);
    out.push_back(
        at::arange(n, at::TensorOptions().dtype(dtype)).mul(0.5).add(start).reshape(spec.shape));
    start += 1;
  }
  return out;
}

void JobSpecSeeds(const fs::path& examples, const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(examples)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    std::ifstream in(file);
    std::stringstream json;
    json << in.rdbuf();
    const std::string stem = file.stem().string();
    Write(dir / (stem + ".json"), json.str());
    v1::JobSpec spec = Check(meta::ParseJobSpec(json.str()));
    std::string text;
    google::protobuf::TextFormat::PrintToString(spec, &text);
    Write(dir / (stem + ".textproto"), text);
  }
  // Refused ones: a bad value, a wrong type, an unknown field.
  Write(dir / "refused_shots.json",
        R"({"algorithm": "maml", "tasks": {"family": "sinusoid", "shots": -1}})");
  Write(dir / "refused_type.json", R"({"algorithm": "maml", "tasks": {"family": 7}})");
  Write(dir / "refused_unknown.textproto", "algorithm: \"maml\"\nshots: 3\n");
}

// Specs of the tensor_codec target (tensor_codec_fuzzer.cc).
std::vector<meta::ParamSpec> CodecSpecs() {
  return {{"net.0.weight", {3, 2}, false},
          {"net.0.bias", {3}, false},
          {"scale", {}, true},
          {"empty", {0, 4}, true}};
}

void TensorCodecSeeds(const fs::path& dir) {
  const auto specs = CodecSpecs();
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    for (int64_t chunk : {8, 24, 1 << 20}) {
      auto chunks = Check(rpc::EncodeTensors(Tensors(specs, dtype), specs, chunk));
      std::string bytes;
      bytes += static_cast<char>(dtype == at::kDouble ? 1 : 0);
      bytes += static_cast<char>(chunk == 8 ? 0 : 2);
      for (const auto& c : chunks) AppendDelimited(bytes, c);
      Write(dir / absl::StrCat("valid_", c10::toString(dtype), "_", chunk), bytes);
      if (chunk != 8) continue;
      // Refused: a NaN in the data, and the chunks out of order.
      auto poisoned = chunks;
      const float nan = std::numeric_limits<float>::quiet_NaN();
      const double nan_d = std::numeric_limits<double>::quiet_NaN();
      std::string data = poisoned[0].data();
      if (dtype == at::kFloat) {
        std::memcpy(data.data(), &nan, sizeof nan);
      } else {
        std::memcpy(data.data(), &nan_d, sizeof nan_d);
      }
      poisoned[0].set_data(data);
      std::string nan_bytes = bytes.substr(0, 2), swapped = bytes.substr(0, 2);
      for (const auto& c : poisoned) AppendDelimited(nan_bytes, c);
      Write(dir / absl::StrCat("refused_nan_", c10::toString(dtype)), nan_bytes);
      std::swap(chunks[0], chunks[1]);
      for (const auto& c : chunks) AppendDelimited(swapped, c);
      Write(dir / absl::StrCat("refused_order_", c10::toString(dtype)), swapped);
    }
  }
}

// Specs of the result_intake target (result_intake_fuzzer.cc).
std::vector<meta::ParamSpec> IntakeSpecs() {
  return {
      {"net.0.weight", {2, 1}, false}, {"net.0.bias", {2}, false}, {"net.2.weight", {1, 2}, true}};
}

void ResultIntakeSeeds(const fs::path& dir) {
  const auto specs = IntakeSpecs();
  const int64_t begin = 1, end = 4;
  const char flags = static_cast<char>(begin << 1);
  // `batched`: the assignment's gradient messages travel in one GradientBatch, as a worker
  // sends small ones; `stray_id`, when set, is the last one's assignment (a mixed batch).
  auto gradient_stream = [&](bool classification, double loss, int64_t chunk_bytes,
                             bool batched = false, int64_t stray_id = 0) {
    std::string bytes(1, static_cast<char>(flags | (classification ? 1 : 0)));
    v1::WorkerMessage batch;
    for (int64_t t = begin; t < end; ++t) {
      auto chunks = Check(rpc::EncodeTensors(Tensors(specs, at::kFloat), specs, chunk_bytes));
      for (size_t i = 0; i < chunks.size(); ++i) {
        v1::WorkerMessage message;
        v1::TaskGradient* g =
            batched ? batch.mutable_gradients()->add_gradients() : message.mutable_gradient();
        g->set_assignment_id(7);
        g->set_task_index(t);
        g->set_task_count(1);
        *g->mutable_chunk() = chunks[i];
        g->set_last(i + 1 == chunks.size());
        if (g->last()) {
          g->add_query_loss(loss);
          g->add_query_accuracy(classification ? 0.6 : -1);
        }
        if (!batched) AppendDelimited(bytes, message);
      }
    }
    if (batched) {
      if (stray_id != 0) {
        auto* gradients = batch.mutable_gradients()->mutable_gradients();
        gradients->Mutable(gradients->size() - 1)->set_assignment_id(stray_id);
      }
      AppendDelimited(bytes, batch);
    }
    v1::WorkerMessage done;
    done.mutable_done()->set_assignment_id(7);
    AppendDelimited(bytes, done);
    return bytes;
  };
  Write(dir / "training_regression", gradient_stream(false, 0.5, 8));
  Write(dir / "training_classification", gradient_stream(true, 0.5, 1 << 20));
  Write(dir / "refused_nan_loss", gradient_stream(false, std::nan(""), 1 << 20));
  Write(dir / "training_batched", gradient_stream(true, 0.5, 1 << 20, /*batched=*/true));
  Write(dir / "refused_mixed_batch", gradient_stream(false, 0.5, 8, /*batched=*/true, 9));
  auto metrics_stream = [&](bool classification, int64_t skip) {
    std::string bytes(1, static_cast<char>(flags | (classification ? 1 : 0)));
    v1::WorkerMessage message;
    v1::AssignmentDone* done = message.mutable_done();
    done->set_assignment_id(8);
    for (int64_t t = begin; t < end; ++t) {
      if (t == skip) continue;
      v1::TaskMetrics* m = done->add_metrics();
      m->set_task_index(t);
      m->set_loss_before(1.5);
      m->set_loss_after(0.5);
      m->set_accuracy_before(classification ? 0.2 : -1);
      m->set_accuracy_after(classification ? 0.8 : -1);
    }
    AppendDelimited(bytes, message);
    return bytes;
  };
  Write(dir / "evaluation_regression", metrics_stream(false, -1));
  Write(dir / "evaluation_classification", metrics_stream(true, -1));
  Write(dir / "refused_missing_metrics", metrics_stream(true, 2));
}

void CheckpointSeeds(const fs::path& dir) {
  const std::vector<meta::ParamSpec> specs = {{"net.0.weight", {2, 1}, false},
                                              {"net.0.bias", {2}, false}};
  const std::vector<meta::ParamSpec> other = {{"net.0.weight", {3, 1}, false}, {"step", {}, false}};
  struct Seed {
    std::string name;
    meta::StateDict state;
  };
  std::vector<Seed> seeds = {
      {"matching", meta::ToStateDict(specs, Tensors(specs, at::kFloat))},
      {"double", meta::ToStateDict(specs, Tensors(specs, at::kDouble))},
      {"other_shapes", meta::ToStateDict(other, Tensors(other, at::kFloat))},
  };
  seeds[2].state["step"] = at::scalar_tensor(int64_t{12}, at::kLong);
  for (const auto& seed : seeds) {
    const std::string file = Check(meta::SerializeStateDict(seed.state));
    Write(dir / ("file_" + seed.name), std::string(1, '\0') + file);
    // The same archive as records (checkpoint_fuzzer.cc PackArchive), the version record
    // left out: the writer adds it.
    caffe2::serialize::PyTorchStreamReader reader(
        std::make_shared<caffe2::serialize::MemoryReadAdapter>(file.data(), file.size()));
    std::string records(1, '\1');
    for (const std::string& name : reader.getAllRecords()) {
      if (name == "version") continue;
      auto [data, size] = reader.getRecord(name);
      records += static_cast<char>(name.size());
      records += name;
      records += static_cast<char>(size & 0xff);
      records += static_cast<char>((size >> 8) & 0xff);
      records.append(static_cast<const char*>(data.get()), size);
    }
    Write(dir / ("records_" + seed.name), records);
  }
  Write(dir / "file_truncated",
        std::string(1, '\0') + Check(meta::SerializeStateDict(seeds[0].state)).substr(0, 200));
}

}  // namespace
}  // namespace metatrain

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s EXAMPLES_DIR CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path corpus(argv[2]);
  metatrain::JobSpecSeeds(argv[1], corpus / "job_spec");
  metatrain::TensorCodecSeeds(corpus / "tensor_codec");
  metatrain::ResultIntakeSeeds(corpus / "result_intake");
  metatrain::CheckpointSeeds(corpus / "checkpoint");
  return 0;
}
