// N-way K-shot image classification over an in-memory few-shot dataset.

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/meta/rng.h"
#include "common/meta/task_family_impl.h"

namespace metatrain::meta {
namespace {

const std::vector<data::ClassRef>& ClassesOf(const data::FewShotDataset& d, Split split) {
  switch (split) {
    case Split::kTrain:
      return d.train_classes;
    case Split::kValidation:
      return d.validation_classes;
    case Split::kTest:
      break;
  }
  return d.test_classes;
}

const char* SplitName(Split split) {
  switch (split) {
    case Split::kTrain:
      return "train";
    case Split::kValidation:
      return "validation";
    case Split::kTest:
      break;
  }
  return "test";
}

class ImageClassificationTasks : public TaskFamily {
 public:
  ImageClassificationTasks(data::FewShotDataset dataset, const v1::TaskSpec& spec,
                           int64_t train_ways, uint64_t seed)
      : dataset_(std::move(dataset)),
        ways_(spec.ways()),
        train_ways_(train_ways > 0 ? train_ways : spec.ways()),
        shots_(spec.shots()),
        query_(spec.query_size()),
        image_size_(spec.image_size()),
        seed_(seed) {
    const auto& im = dataset_.images;
    // A byte tensor over the dataset's pixels (no copy; dataset_ outlives it).
    pixels_ =
        at::from_blob(dataset_.images.pixels.data(), {im.size(), im.channels, im.height, im.width},
                      at::TensorOptions().dtype(at::kByte));
  }

  std::vector<int64_t> input_shape() const override {
    return {dataset_.images.channels, image_size_, image_size_};
  }
  int64_t output_size() const override { return ways_; }
  LossKind loss() const override { return LossKind::kCrossEntropy; }

  absl::StatusOr<TaskBatch> Sample(absl::Span<const TaskKey> keys,
                                   at::ScalarType dtype) const override {
    const int64_t t = static_cast<int64_t>(keys.size());
    const int64_t per_class = shots_ + query_;
    // Training episodes may be wider than evaluation ones (protonet.train_ways); tasks of
    // one batch share a shape, so one call takes one kind.
    const int64_t ways = keys.empty() ? ways_ : WaysOf(keys[0].split);
    for (const TaskKey& key : keys) {
      if (WaysOf(key.split) != ways) {
        return absl::InvalidArgumentError(absl::StrCat("task keys mix training (", train_ways_,
                                                       "-way) and evaluation (", ways_,
                                                       "-way) tasks in one batch"));
      }
    }
    std::vector<at::Tensor> support, query;
    support.reserve(t * ways);
    query.reserve(t * ways);
    for (const TaskKey& key : keys) {
      const auto& classes = ClassesOf(dataset_, key.split);
      if (static_cast<int64_t>(classes.size()) < ways) {
        // Only the validation split may be empty (Fashion-MNIST has none): Validate() checked.
        return absl::InvalidArgumentError(absl::StrCat("this dataset has no ", SplitName(key.split),
                                                       " classes (", dataset_.split_description,
                                                       "); set validation_interval to 0"));
      }
      Rng rng(TaskSeed(seed_, key));
      // Random order: position in `picked` is the label, so labels are shuffled too.
      const std::vector<int64_t> picked =
          rng.SampleWithoutReplacement(static_cast<int64_t>(classes.size()), ways);
      for (int64_t label = 0; label < ways; ++label) {
        const data::ClassRef& ref = classes[picked[label]];
        const auto& examples = dataset_.examples_by_class[ref.base];
        const std::vector<int64_t> chosen =
            rng.SampleWithoutReplacement(static_cast<int64_t>(examples.size()), per_class);
        std::vector<int64_t> indices(per_class);
        for (int64_t j = 0; j < per_class; ++j) indices[j] = examples[chosen[j]];
        at::Tensor images =
            pixels_.index_select(0, at::tensor(indices, at::TensorOptions().dtype(at::kLong)));
        if (ref.quarter_turns % 4 != 0) images = at::rot90(images, ref.quarter_turns, {2, 3});
        support.push_back(images.narrow(0, 0, shots_));
        query.push_back(images.narrow(0, shots_, query_));
      }
    }
    auto to_float = [&](std::vector<at::Tensor>& parts, int64_t n) {
      at::Tensor x = at::cat(parts, 0).to(at::kFloat).div_(255.0);
      if (x.size(2) != image_size_ || x.size(3) != image_size_) {
        x = at::upsample_bilinear2d(x, {image_size_, image_size_}, /*align_corners=*/false);
      }
      return x.to(dtype).reshape({t, n * ways, x.size(1), image_size_, image_size_});
    };
    auto labels = [&](int64_t n) {
      return at::arange(ways, at::TensorOptions().dtype(at::kLong))
          .repeat_interleave(n)
          .repeat({t, 1});
    };
    TaskBatch batch;
    batch.support_x = to_float(support, shots_);
    batch.support_y = labels(shots_);
    batch.query_x = to_float(query, query_);
    batch.query_y = labels(query_);
    return batch;
  }

  absl::Status Validate() const {
    const auto& im = dataset_.images;
    if (im.size() == 0 || im.height <= 0 || im.width <= 0 || im.channels <= 0) {
      return absl::InvalidArgumentError("dataset has no images");
    }
    if (static_cast<int64_t>(im.pixels.size()) != im.size() * im.image_bytes()) {
      return absl::InvalidArgumentError(absl::StrCat("dataset has ", im.pixels.size(),
                                                     " pixel bytes, expected ",
                                                     im.size() * im.image_bytes()));
    }
    for (Split split : {Split::kTrain, Split::kValidation, Split::kTest}) {
      const auto& classes = ClassesOf(dataset_, split);
      // Some datasets have no meta-validation classes; validating on them is refused later.
      if (split == Split::kValidation && classes.empty()) continue;
      if (static_cast<int64_t>(classes.size()) < WaysOf(split)) {
        return absl::InvalidArgumentError(absl::StrCat(
            split == Split::kTrain && train_ways_ != ways_ ? "protonet.train_ways" : "tasks.ways",
            " is ", WaysOf(split), " but the ", SplitName(split), " split has only ",
            classes.size(), " classes"));
      }
      for (const auto& ref : classes) {
        if (ref.base < 0 || ref.base >= static_cast<int64_t>(dataset_.examples_by_class.size())) {
          return absl::InvalidArgumentError(
              absl::StrCat("dataset: class ", ref.base, " out of range"));
        }
        const auto n = static_cast<int64_t>(dataset_.examples_by_class[ref.base].size());
        if (n < shots_ + query_) {
          const std::string name = ref.base < static_cast<int64_t>(im.class_names.size())
                                       ? im.class_names[ref.base]
                                       : absl::StrCat(ref.base);
          return absl::InvalidArgumentError(absl::StrCat(
              "tasks.shots + tasks.query_size = ", shots_ + query_, " but class '", name,
              "' of the ", SplitName(split), " split has only ", n, " examples"));
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t WaysOf(Split split) const { return split == Split::kTrain ? train_ways_ : ways_; }

  data::FewShotDataset dataset_;
  at::Tensor pixels_;
  int64_t ways_, train_ways_, shots_, query_, image_size_;
  uint64_t seed_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TaskFamily>> MakeImageClassificationTasks(
    data::FewShotDataset dataset, const v1::TaskSpec& spec, uint64_t seed, int64_t train_ways) {
  auto family =
      std::make_unique<ImageClassificationTasks>(std::move(dataset), spec, train_ways, seed);
  absl::Status status = family->Validate();
  if (!status.ok()) return status;
  return std::unique_ptr<TaskFamily>(std::move(family));
}

}  // namespace metatrain::meta
