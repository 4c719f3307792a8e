#ifndef METATRAIN_COMMON_META_RUNTIME_H_
#define METATRAIN_COMMON_META_RUNTIME_H_

// Process-wide settings for programs that run the meta-learning core (worker, trainer,
// benchmarks). Call once at the start of main, before any tensor is allocated.

namespace metatrain::meta {

// Sets LibTorch's intra-op thread count (>= 1) and keeps freed memory in the heap.
//
// NOTE [Allocator churn]: a batched meta-step allocates and frees tensors of several MiB
// (per-task weight copies, activations of the whole meta-batch). glibc serves blocks above
// its mmap threshold with fresh mmap()s and returns them on free(), so every step paid for
// page faults and zeroing of new pages: 28% of a fully-connected Omniglot step was kernel
// time (perf). Raising the mmap and trim thresholds keeps those pages mapped and reused:
// 1.6x more tasks/s on that workload (docs/benchmarks.md). Peak memory is unchanged; the
// process just does not hand pages back between steps.
void ConfigureRuntime(int intra_op_threads);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_RUNTIME_H_
