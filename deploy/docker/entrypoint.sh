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

case "$(basename "$program")" in
  metatrain-coordinator | metatrain-worker)
    if [[ -n ${METATRAIN_METRICS_LISTEN:-} ]]; then
      set -- "--metrics_listen=$METATRAIN_METRICS_LISTEN" "$@"
    fi
    ;;
esac
exec "$program" "$@"
