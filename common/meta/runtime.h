#ifndef METATRAIN_COMMON_META_RUNTIME_H_
#define METATRAIN_COMMON_META_RUNTIME_H_

// Process-wide settings for programs that run the meta-learning core (worker, trainer,
// coordinator, benchmarks). Call once at the start of main, before any tensor is allocated.

namespace metatrain::meta {

// Sets LibTorch's intra-op thread count to one (NOTE [One intra-op thread per task]) and
// keeps freed memory in the heap.
//
// NOTE [One intra-op thread per task]: every task is computed with one LibTorch intra-op
// thread, in every process, so a task's bits never depend on a thread count. oneDNN's
// convolution, which the conv net uses because it is 2-3x faster than ATen's im2col + GEMM
// on Omniglot shapes, splits its work (and so the order of its sums) by the intra-op
// thread count; ATen's reductions and OpenBLAS can too. A process with several cores
// computes several task groups at once instead, one per thread (task_groups.h: worker and
// metatrain-train --threads), which also scales better on tasks this small than splitting
// each op does. Tested by tests/common/meta/batch_independence_test.cc (1 vs 4 threads).
//
// NOTE [Allocator churn]: a batched meta-step allocates and frees tensors of several MiB
// (per-task weight copies, activations of the whole meta-batch). glibc serves blocks above
// its mmap threshold with fresh mmap()s and returns them on free(), so every step paid for
// page faults and zeroing of new pages: 28% of a fully-connected Omniglot step was kernel
// time (perf). Raising the mmap and trim thresholds keeps those pages mapped and reused:
// 1.6x more tasks/s on that workload (docs/benchmarks.md). Peak memory is unchanged; the
// process just does not hand pages back between steps.
void ConfigureRuntime();

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_RUNTIME_H_
