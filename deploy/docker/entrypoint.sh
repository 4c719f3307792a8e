#!/usr/bin/env bash
# Entrypoint of the metatrain images: runs PROGRAM ARGS... (metatrain-coordinator,
# metatrain-worker, metactl or any other command).
#
# METATRAIN_METRICS_LISTEN=HOST:PORT adds --metrics_listen=HOST:PORT (the Prometheus /metrics
# endpoint) to metatrain-coordinator and metatrain-worker when the program has that flag.
# Builds from before the flag existed start without it, with one line saying so, instead of
# refusing an unknown flag: the same compose file and manifests serve both.
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
      # absl prints the matching flags for --helpmatch and exits non-zero.
      if { "$program" --helpmatch=metrics_listen 2>&1 || true; } | grep -q -- '-metrics_listen'; then
        set -- "--metrics_listen=$METATRAIN_METRICS_LISTEN" "$@"
      else
        echo "metatrain-entrypoint: $(basename "$program") has no --metrics_listen flag;" \
          "starting without a /metrics endpoint" >&2
      fi
    fi
    ;;
esac
exec "$program" "$@"
