#ifndef METATRAIN_WORKER_INNER_LOOP_RUNNER_H_
#define METATRAIN_WORKER_INNER_LOOP_RUNNER_H_

// The worker's business logic, free of gRPC: it turns the coordinator's session messages
// (JobSetup, Parameters, Assignment; see proto/metatrain/v1/worker_service.proto) into the
// worker's answers (TaskGradient chunks and AssignmentDone). The session client in
// worker/rpc/ only moves these messages over the wire.
//
// Per job it keeps one JobContext (model, task family with its dataset loaded once,
// learner), built again on demand after the bounded cache dropped it, and the most recent
// complete parameter versions. An assignment rebuilds its
// tasks from (job seed, TaskKey{split, round, index}) and runs the learner once, batched,
// over all of them.
//
// Errors never escape as crashes: a job that cannot be set up (bad data directory, bad
// spec) or an assignment that cannot be computed (a poisoned parameter version, a LibTorch
// error) is answered with AssignmentDone.error naming the cause. What the cache no longer
// holds is not an error: an assignment for a job without a setup here (never sent, or
// forgotten: at most max_known_jobs jobs stay) or for a parameter version it lacks is
// answered with AssignmentDone.needs_setup, and the coordinator sends JobSetup and
// Parameters again (proto/metatrain/v1/worker_service.proto).
//
// Thread-compatible: the session client calls it from one thread.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/files/confined_path.h"
#include "common/meta/trainer.h"
#include "common/rpc/tensor_codec.h"
#include "metatrain/v1/worker_service.pb.h"
#include "worker/worker_metrics.h"

namespace metatrain::worker {

struct RunnerOptions {
  // Replaces JobSpec.tasks.data_dir when non-empty: the worker's own copy of the data.
  std::string data_dir;
  // Where the paths that come with a job (tasks.data_dir unless data_dir replaces it,
  // tasks.tensor_file) must lie; a path outside or missing fails the job's setup with
  // "<field> '<path>': not found under --data_root" (common/files/confined_path.h).
  // Default (no roots): anywhere; metatrain-worker sets them from --data_root.
  files::ConfinedRoots data_roots;
  // "cpu" or "cuda:N". Tasks and parameters are moved there for the computation.
  std::string device = "cpu";
  // Jobs whose context (model, task family, dataset) stays built; the least recently used
  // (set up, sent parameters or assigned) gives its up first. At least 1. More jobs than
  // this may run at once: a job whose context was dropped keeps its spec and parameters
  // and is built again when its parameters or assignments come (rebuilding costs a dataset
  // load, not a failure).
  int max_cached_jobs = 4;
  // Jobs whose spec and latest parameter versions are kept (small next to a dataset); the
  // least recently used beyond this is forgotten, and its next assignment asks for the
  // setup again (needs_setup). At least max_cached_jobs.
  int max_known_jobs = 64;
  // Meta-gradients of an assignment computed this many tasks at a time (0: the model's
  // default, Model::default_task_group_size: 1 for the conv net, all at once for MLPs):
  // less memory, the same bits (common/meta/task_groups.h).
  int task_group_size = 0;
  // Task groups computed at once, one per thread; each task runs on one LibTorch intra-op
  // thread whatever this is (NOTE [One intra-op thread per task], common/meta/runtime.h).
  int threads = 1;
  // Size of the pieces gradients are cut into (tests use small ones to exercise chunking).
  int64_t max_chunk_bytes = rpc::kDefaultMaxChunkBytes;
  // Where job setups and assignments are recorded; optional, must outlive the runner.
  WorkerMetrics* metrics = nullptr;
};

// Parses "cpu" / "cuda" / "cuda:N". INVALID_ARGUMENT for anything else; FAILED_PRECONDITION
// for CUDA when the linked LibTorch has no usable CUDA device.
absl::StatusOr<at::Device> ParseDevice(const std::string& device);

class InnerLoopRunner {
 public:
  using Emit = std::function<void(v1::WorkerMessage)>;

  // `options.device` must have been checked with ParseDevice.
  explicit InnerLoopRunner(RunnerOptions options);

  // Builds (or reuses, when the spec is unchanged) the job's context. A failure is
  // returned and also remembered: the job's assignments are answered with it.
  absl::Status HandleJobSetup(const v1::JobSetup& setup);

  // Adds one chunk of a parameter version. When the last chunk arrives the version becomes
  // usable and older versions of the job are dropped (except the previous one). A bad
  // chunk poisons that version; assignments that need it get the error. Chunks of a job
  // without a setup here (evicted) are dropped: OK, since the assignment that follows asks
  // for the setup and the parameters again.
  absl::Status HandleParameters(const v1::Parameters& parameters);

  // Computes the assignment and emits, in order, one set of TaskGradient chunks per
  // gradient group (training; consecutive chunks batched into one GradientBatch message
  // while they fit in max_chunk_bytes) and then exactly one AssignmentDone (with metrics for
  // evaluation, or an error). When the job's setup or the parameter version is missing, emits only
  // an AssignmentDone with needs_setup. Never fails otherwise. `cancelled` (optional, thread-safe):
  // the coordinator cancelled the assignment while it runs (NOTE [Cancelled assignments],
  // coordinator/worker_pool_source.h). It is asked before each compute group (--task_group_size);
  // once true, no further group starts and only an AssignmentDone with `cancelled` is emitted.
  void HandleAssignment(const v1::Assignment& assignment, const Emit& emit,
                        const std::function<bool()>& cancelled = {});

  // NOTE [Episode prefetch]
  // Samples, ahead of time, the episodes the next training assignment most likely holds:
  // the last training assignment's task indices at the next round (the coordinator shards
  // a round over the workers free at its start, so a worker keeps its share while the
  // workers stay). The session calls this while no message waits, i.e. in the gap between
  // sending a step's gradients and receiving the next step's parameters. Sampling is a pure
  // function of the task keys (common/meta/task_family.h), so a prefetched batch is exactly
  // what sampling on arrival gives, and the bits cannot change; an assignment with other
  // keys samples its own and the guess is dropped. One batch at most is held.
  // Returns true when it sampled (false: nothing to guess, or already done).
  bool PrefetchNextEpisodes();

  // Forgets parameter versions (kept: job contexts). Called when a new session starts,
  // since a restarted coordinator numbers versions afresh.
  void ResetSession();

  // Jobs whose context is built now.
  int cached_jobs() const;

 private:
  struct ParameterVersion {
    std::unique_ptr<rpc::TensorAssembler> assembler;  // while chunks arrive
    meta::TensorList tensors;                         // once complete
    absl::Status error;
    bool complete = false;
  };
  struct Job {
    std::string spec_bytes;  // the JobSetup spec, to detect a reused id with a new spec
    v1::JobSpec spec;
    absl::Status setup_error;
    std::unique_ptr<meta::JobContext> context;  // null until built, or after being dropped
    std::map<int64_t, ParameterVersion> versions;
    int64_t last_used = 0;
  };

  // The job's setup or the assignment's parameter version is not here (and not because
  // of an error that the coordinator must hear about).
  bool NeedsSetup(const v1::Assignment& assignment) const;
  // Runs the assignment; on success fills `done` (metrics) and emits gradients.
  absl::Status Compute(const v1::Assignment& assignment, const Emit& emit, v1::AssignmentDone& done,
                       const std::function<bool()>& cancelled);
  // Builds the job's context if it has none (and no setup error); returns the setup error.
  absl::Status EnsureContext(const std::string& job_id, Job& job);
  // Drops the contexts of the least recently used jobs (except `keep`) beyond `limit`.
  void DropContextsBeyond(int limit, const Job* keep);
  // Contexts beyond max_cached_jobs, then jobs beyond max_known_jobs.
  void EvictIfNeeded();

  struct EpisodeKeys {
    std::string job_id;
    v1::TaskSplit split = v1::TASK_SPLIT_TRAIN;
    int64_t round = 0;
    std::vector<int64_t> task_indices;
    bool operator==(const EpisodeKeys& other) const {
      return job_id == other.job_id && split == other.split && round == other.round &&
             task_indices == other.task_indices;
    }
  };
  static EpisodeKeys KeysOf(const v1::Assignment& assignment);
  static std::vector<meta::TaskKey> TaskKeys(const EpisodeKeys& keys);
  // The prefetched batch when it is the one `keys` names (then forgotten), else nothing.
  std::optional<meta::TaskBatch> TakePrefetched(const EpisodeKeys& keys);

  RunnerOptions options_;
  at::Device device_;
  std::optional<EpisodeKeys> next_guess_;  // set by a training assignment, consumed by prefetch
  std::optional<std::pair<EpisodeKeys, meta::TaskBatch>> prefetched_;
  std::map<std::string, Job> jobs_;
  int64_t clock_ = 0;
};

}  // namespace metatrain::worker

#endif  // METATRAIN_WORKER_INNER_LOOP_RUNNER_H_
