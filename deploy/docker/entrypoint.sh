#!/usr/bin/env bash
# Entrypoint of the metatrain images: runs PROGRAM ARGS... (metatrain-coordinator,
# metatrain-worker, metactl or any other command).
#
# METATRAIN_METRICS_LISTEN=HOST:PORT adds --metrics_listen=HOST:PORT (the Prometheus /metrics
# endpoint) to metatrain-coordinator and metatrain-worker.
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "metatrain-entrypoint: usage: PROGRAM [ARGS...]" >&2
  exit 2
fi
program=$1
shift

# OpenBLAS 0.3.21 (Debian 12) does not recognise recent AVX-512 CPUs and falls back to
# generic kernels, 3-4x slower for the MLPs' matrix products (docs/benchmarks.md): name the
# kernel family when the CPU has AVX-512 and nobody chose one (the Makefile does the same).
# METATRAIN_CPUINFO: another file to read the CPU flags from (tests).
if [[ -z ${OPENBLAS_CORETYPE:-} ]] && grep -qm1 avx512f "${METATRAIN_CPUINFO:-/proc/cpuinfo}" 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi

case "$(basename "$program")" in
  metatrain-coordinator | metatrain-worker)
    if [[ -n ${METATRAIN_METRICS_LISTEN:-} ]]; then
      set -- "--metrics_listen=$METATRAIN_METRICS_LISTEN" "$@"
    fi
    ;;
esac
exec "$program" "$@"
