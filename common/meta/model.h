#ifndef METATRAIN_COMMON_META_MODEL_H_
#define METATRAIN_COMMON_META_MODEL_H_

// Functional models: a model owns no tensors. It describes its parameters and computes
// a forward pass from any list of parameters of the right shapes, so inner-loop updates
// stay differentiable and many tasks run as one batched computation.
//
// Models are immutable after construction and thread-safe. Forward throws (c10::Error) on
// malformed input; callers inside the core validate shapes first (the learners do) and
// wrap LibTorch calls in CatchTorch. The batched design, the batch-norm behaviour and the
// equivalent PyTorch modules are described in docs/core-models.md.

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/params.h"
#include "common/meta/rng.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

class Model {
 public:
  virtual ~Model() = default;

  // Parameter layout, in state_dict order.
  virtual const std::vector<ParamSpec>& param_specs() const = 0;

  // Shape of one input example (as given to MakeModel) and the number of outputs; the
  // learners check task batches against them.
  virtual const std::vector<int64_t>& input_shape() const = 0;
  virtual int64_t output_size() const = 0;

  // PyTorch's default initialisation for the same layers (kaiming-uniform weights,
  // uniform(±1/sqrt(fan_in)) biases, batch-norm weight 1 / bias 0), drawn from `rng`.
  virtual TensorList Initialize(Rng& rng, at::ScalarType dtype) const = 0;

  // Batched forward over T tasks. params[i] has shape [T, param_specs()[i].shape...];
  // x has shape [T, B, input_shape...]. Returns [T, B, output_size]. Task t's output
  // depends only on params[.][t] and x[t]. Batch norm uses the batch's own statistics.
  virtual at::Tensor Forward(const TensorList& params, const at::Tensor& x) const = 0;

  // The model without its head: the features the head reads, [T, B, embedding_size()].
  // `params` holds the body's parameters (param_specs() without the head entries, which
  // come last), optionally followed by the head's, which are not read. Forward is the head
  // applied to this, bit for bit. Prototypical networks classify in this space.
  virtual at::Tensor Embed(const TensorList& params, const at::Tensor& x) const = 0;
  virtual int64_t embedding_size() const = 0;

  // How many tasks a process computes together when nobody says (task_groups.h); 0: all of
  // them. Batching tasks pays where a layer is one product for every task (the MLP); where
  // the model runs task by task anyway it only keeps every task's graph alive.
  virtual int64_t default_task_group_size() const { return 0; }
};

// Builds the model of `spec` for inputs of `input_shape` (one example, e.g. {1} or
// {1, 28, 28}) and `output_size` outputs. INVALID_ARGUMENT names the bad field.
absl::StatusOr<std::unique_ptr<Model>> MakeModel(const v1::ModelSpec& spec,
                                                 const std::vector<int64_t>& input_shape,
                                                 int64_t output_size);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_MODEL_H_
