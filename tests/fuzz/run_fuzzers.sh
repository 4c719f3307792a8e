#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 + ASan + UBSan in their own build dir and runs
# each for a bounded number of inputs; fails on any crash, leak, timeout, out-of-memory or
# broken property (docs/security.md "Fuzzing and sanitizers").
#   run_fuzzers.sh [BUILD_DIR]        (default: build-fuzz beside this checkout's sources)
# Environment:
#   FUZZ_RUNS      inputs per target (default 200000)
#   FUZZ_SECONDS   time limit per target, seconds (default 30); whichever comes first ends it
#   FUZZ_JOBS      compile jobs (default: nproc)
#   FUZZ_SEED      libFuzzer's random seed (default 1, so a clean checkout's run, CI's, is
#                  repeatable; 0: a new random seed each run, for searching longer)
#   FUZZ_TARGETS   the targets to run (default: all four). The checkpoint target runs since
#                  torch files are validated before LibTorch parses them (torch_file.h):
#                  before that it found LibTorch's unpickler allocating what a corrupt file
#                  claims (docs/security.md "Fuzzing and sanitizers").
#   METATRAIN_REQUIRE_FUZZ=1  a machine without clang-14 / libclang-rt-14-dev fails instead
#                  of skipping (exit 77); CI sets it (.ci/run).
# New inputs the fuzzer finds interesting go to BUILD_DIR/corpus/<target>/ (kept between
# runs); a failing input is written to BUILD_DIR/artifacts/ and the script prints how to
# replay it. The seed corpora under tests/fuzz/corpus/ are only read.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build-fuzz}
runs=${FUZZ_RUNS:-200000}
seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-$(nproc)}
read -r -a targets <<<"${FUZZ_TARGETS:-job_spec tensor_codec result_intake checkpoint}"

missing() {
  if [[ ${METATRAIN_REQUIRE_FUZZ:-0} == 1 ]]; then
    echo "run_fuzzers: $1 (METATRAIN_REQUIRE_FUZZ=1)" >&2
    exit 1
  fi
  echo "run_fuzzers: $1; skipped (deploy/install-deps.sh installs it)" >&2
  exit 77
}
command -v clang++-14 >/dev/null || missing "clang++-14 not found"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
  >"$probe/probe.cc"
clang++-14 -fsanitize=fuzzer,address,undefined "$probe/probe.cc" -o "$probe/probe" 2>"$probe/err" ||
  missing "clang-14 cannot link libFuzzer ($(head -1 "$probe/err"); libclang-rt-14-dev missing?)"

start=$(date +%s)
cmake -S "$src" -B "$build" -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g1" -DMETATRAIN_BUILD_TESTS=OFF -DMETATRAIN_FUZZ=ON \
  -DMETATRAIN_SANITIZE=address,undefined >/dev/null
cmake --build "$build" -j "$jobs" --target metatrain_fuzzers
built=$(date +%s)
echo "run_fuzzers: built in $((built - start)) s"

sanitizers=$src/tests/sanitizers
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export LSAN_OPTIONS=suppressions=$sanitizers/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$sanitizers/ubsan.supp
export OPENBLAS_NUM_THREADS=1
mkdir -p "$build/artifacts"
failed=()
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target
  mkdir -p "$corpus"
  log=$build/$target.log
  asan_options=$ASAN_OPTIONS
  # LibTorch has no frame pointers: the slow unwinder puts its frames on the stacks that
  # lsan.supp matches (about 4x slower per input).
  if [[ $target == checkpoint ]]; then asan_options+=:fast_unwind_on_malloc=0; fi
  t0=$(date +%s)
  # -error_exitcode/-timeout_exitcode: libFuzzer's defaults (77, 70) would read as "skipped"
  # to ctest. -timeout: one input taking over 10 s is a hang. -rss_limit_mb: an input that
  # makes the code allocate GBs is a finding.
  if ASAN_OPTIONS=$asan_options "$build/tests/fuzz/${target}_fuzzer" -runs="$runs" -max_total_time="$seconds" -seed="${FUZZ_SEED:-1}" -timeout=10 \
      -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" "$corpus" "$src/tests/fuzz/corpus/$target" \
      >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "run_fuzzers: $target: ok, $execs inputs in $(($(date +%s) - t0)) s"
  else
    echo "run_fuzzers: $target: FAILED (log: $log)" >&2
    tail -40 "$log" >&2
    echo "replay: $build/tests/fuzz/${target}_fuzzer <artifact from $build/artifacts/>" >&2
    failed+=("$target")
  fi
done
echo "run_fuzzers: total $(($(date +%s) - start)) s"
if ((${#failed[@]})); then
  echo "run_fuzzers: failed: ${failed[*]}" >&2
  exit 1
fi
