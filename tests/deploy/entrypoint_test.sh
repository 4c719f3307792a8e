#!/usr/bin/env bash
# The image entrypoint (deploy/docker/entrypoint.sh), run on the host with `env` as the
# program: OPENBLAS_CORETYPE is set to SkylakeX on a CPU with AVX-512 only, and a value
# the operator chose is kept.
set -euo pipefail
entrypoint=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf 'flags\t\t: fpu sse2 avx2 avx512f avx512bw\n' >"$dir/avx512"
printf 'flags\t\t: fpu sse2 avx2 fma\n' >"$dir/avx2"

fail() { echo "entrypoint_test: $*" >&2; exit 1; }
coretype() { env -u OPENBLAS_CORETYPE "$@" bash "$entrypoint" env | sed -n 's/^OPENBLAS_CORETYPE=//p'; }

[[ $(coretype METATRAIN_CPUINFO="$dir/avx512") == SkylakeX ]] || fail "AVX-512 CPU: not SkylakeX"
[[ -z $(coretype METATRAIN_CPUINFO="$dir/avx2") ]] || fail "AVX2 CPU: OPENBLAS_CORETYPE set"
[[ $(coretype METATRAIN_CPUINFO="$dir/avx512" OPENBLAS_CORETYPE=Haswell) == Haswell ]] ||
  fail "the operator's OPENBLAS_CORETYPE was replaced"
[[ -z $(coretype METATRAIN_CPUINFO="$dir/missing") ]] || fail "no cpuinfo: OPENBLAS_CORETYPE set"
echo "entrypoint_test: ok"
