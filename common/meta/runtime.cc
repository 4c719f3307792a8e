#include "common/meta/runtime.h"

#include <ATen/Parallel.h>
#include <malloc.h>

namespace metatrain::meta {

void ConfigureRuntime() {
  constexpr int kMmapThreshold = 1 << 30;  // only blocks over 1 GiB get their own mapping
  constexpr int kTrimThreshold = 1 << 30;  // keep up to 1 GiB of free heap mapped
  constexpr int kTopPad = 64 << 20;        // grow the heap in 64 MiB steps
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
  mallopt(M_TOP_PAD, kTopPad);
  at::set_num_threads(1);
}

}  // namespace metatrain::meta
