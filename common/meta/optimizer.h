#ifndef METATRAIN_COMMON_META_OPTIMIZER_H_
#define METATRAIN_COMMON_META_OPTIMIZER_H_

// The outer optimizer (Adam or SGD with momentum), written out rather than taken from
// torch::optim so that its whole state is a list of named tensors that a checkpoint holds
// and a resumed run restores exactly. Update formulas match torch.optim.Adam / SGD.

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/meta/params.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

class OuterOptimizer {
 public:
  virtual ~OuterOptimizer() = default;
  // params -= update(grads), in place. Shapes match the specs given at construction.
  virtual void Step(TensorList& params, const TensorList& grads) = 0;
  virtual double lr() const = 0;
  virtual void set_lr(double lr) = 0;
  // State as named tensors ("adam.exp_avg.<param>", "adam.step", ...) and back.
  virtual std::map<std::string, at::Tensor> State() const = 0;
  virtual absl::Status LoadState(const std::map<std::string, at::Tensor>& state) = 0;
};

absl::StatusOr<std::unique_ptr<OuterOptimizer>> MakeOuterOptimizer(
    const v1::OptimizerSpec& spec, const std::vector<ParamSpec>& specs);

// Scales grads in place so their global L2 norm is at most max_norm (as
// torch.nn.utils.clip_grad_norm_). Returns the norm before clipping.
double ClipGradNorm(TensorList& grads, double max_norm);

// ReduceLROnPlateau (mode "min", relative threshold 1e-4, as PyTorch's defaults).
class PlateauSchedule {
 public:
  PlateauSchedule(double factor, int patience, double min_lr);
  // Returns the new learning rate after observing a validation loss.
  double Observe(double loss, double current_lr);

 private:
  double factor_, min_lr_;
  int patience_, bad_epochs_ = 0;
  double best_;
};

// Stops after `patience` evaluations without improvement (0: never). Tracks the best.
class EarlyStopping {
 public:
  explicit EarlyStopping(int patience) : patience_(patience) {}
  // Returns true if `loss` is a new best.
  bool Observe(double loss);
  bool should_stop() const { return patience_ > 0 && since_best_ >= patience_; }
  double best() const { return best_; }

 private:
  int patience_;
  int since_best_ = 0;
  double best_ = 1e300;
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_OPTIMIZER_H_
