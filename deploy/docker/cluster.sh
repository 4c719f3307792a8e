#!/usr/bin/env bash
# The docker-compose cluster (docker-compose.yml), with what plain docker-compose leaves to
# the user done first: a running Docker daemon, the debian:bookworm base image
# (base-image.sh), and a Docker client that builds with BuildKit.
#
#   deploy/docker/cluster.sh up [SERVICE...]     # build the images, start, wait until the coordinator is healthy
#   deploy/docker/cluster.sh down [ARGS...]      # docker-compose down ARGS (-v also deletes the volumes)
#   deploy/docker/cluster.sh build [SERVICE...]  # build the images only
#   deploy/docker/cluster.sh compose ARGS...     # any docker-compose command, with the same set-up
#
# `up` without services starts coordinator, worker, prometheus and grafana; Grafana is left
# out, with a note, when its image is neither present nor pullable (no registry reachable).
# Environment: everything docker-compose.yml reads (METATRAIN_PORT, METATRAIN_DATA_DIR, ...),
# COMPOSE_FILE for the GPU override, COMPOSE_PROJECT_NAME, WORKERS (default 2),
# METATRAIN_SECRETS_DIR (default build/cluster-secrets: made by deploy/tls/make-certs.sh on
# `up` and `compose` when missing; metactl on the host uses its client/ folder).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/deploy/docker"
cd "$ROOT"
say() { echo "cluster: $*" >&2; }

# Starts dockerd in the background when no daemon answers and we may (root, dockerd
# installed): machines without systemd (containers, CI runners) do not start it at boot.
ensure_daemon() {
  docker info >/dev/null 2>&1 && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v dockerd >/dev/null; then
    say "no Docker daemon answers and this user cannot start one (dockerd needs root)"
    return 1
  fi
  say "starting dockerd (log: /var/log/metatrain-dockerd.log)"
  setsid dockerd >>/var/log/metatrain-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  tail -20 /var/log/metatrain-dockerd.log >&2
  say "dockerd did not come up within 60 s"
  return 1
}

# docker-compose v1 builds by running `docker build` from PATH. BuildKit then needs either
# a client from before Docker 23 with DOCKER_BUILDKIT=1 (Debian 12's docker.io) or the
# buildx plugin; a newer client without buildx refuses. Put a client that can first on PATH.
use_buildkit_client() {
  export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1
  docker buildx version >/dev/null 2>&1 && return 0
  local client major
  for client in $(type -ap docker); do
    major=$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1) || continue
    if [[ $major =~ ^[0-9]+$ ]] && ((major < 23)); then
      if [[ $client != "$(type -p docker)" ]]; then
        local bin="${TMPDIR:-/tmp}/metatrain-docker-client-$(id -u)"
        if [[ $(readlink "$bin/docker" 2>/dev/null) != "$client" ]]; then
          mkdir -p "$bin" && ln -sfn "$client" "$bin/docker"
          say "building with $client (the first docker on PATH cannot use BuildKit without buildx)"
        fi
        export PATH="$bin:$PATH"
      fi
      return 0
    fi
  done
  say "no Docker client here builds with BuildKit: install Debian's docker.io or the buildx plugin"
  return 1
}

compose() { docker-compose "$@"; }

# The cluster's certificates and tokens (docs/security.md): made once by
# deploy/tls/make-certs.sh, kept across runs, readable by the images' user (uid 10001).
export METATRAIN_SECRETS_DIR=${METATRAIN_SECRETS_DIR:-$ROOT/build/cluster-secrets}
ensure_secrets() {
  bash "$ROOT/deploy/tls/make-certs.sh" "$METATRAIN_SECRETS_DIR" --for-containers 2>/dev/null ||
    { say "deploy/tls/make-certs.sh failed (is openssl installed?)"; return 1; }
}

default_services() {
  local grafana
  grafana=$(compose config | sed -n 's/^ *image: *\(grafana\/.*\)$/\1/p' | head -1)
  local services=(coordinator worker prometheus)
  if [[ -n $grafana ]] && { docker image inspect "$grafana" >/dev/null 2>&1 || docker pull -q "$grafana" >/dev/null 2>&1; }; then
    services+=(grafana)
  else
    say "Grafana's image ${grafana:-?} cannot be fetched here (no registry); starting without Grafana"
  fi
  echo "${services[@]}"
}

build() {
  ensure_daemon
  "$HERE/base-image.sh"
  use_buildkit_client
  # The coordinator first: the worker image then reuses its build stage from the cache.
  local services=("$@")
  ((${#services[@]})) || services=(coordinator worker prometheus)
  local service
  for service in "${services[@]}"; do
    say "building $service"
    compose build "$service"
  done
}

command=${1:-}
shift || true
case "$command" in
  build)
    build "$@"
    ;;
  up)
    ensure_daemon
    if (($#)); then services=("$@"); else read -r -a services <<<"$(default_services)"; fi
    buildable=()
    for s in "${services[@]}"; do [[ $s == grafana ]] || buildable+=("$s"); done
    build "${buildable[@]}"
    ensure_secrets
    # up returns once every container has started; workers wait for the coordinator's
    # health check (depends_on: service_healthy), so it is healthy when this returns.
    compose up -d --no-build --scale "worker=${WORKERS:-2}" "${services[@]}"
    port=$(compose port coordinator 50051 | sed 's/.*://')
    say "coordinator at localhost:$port: build/tools/metactl/metactl --coordinator localhost:$port --tls_ca $METATRAIN_SECRETS_DIR/client/ca.crt --token_file $METATRAIN_SECRETS_DIR/client/admin.token submit examples/sinusoid_maml.json --watch"
    if printf '%s\n' "${services[@]}" | grep -qx prometheus; then
      say "Prometheus at http://localhost:$(compose port prometheus 9090 | sed 's/.*://')"
    fi
    if printf '%s\n' "${services[@]}" | grep -qx grafana; then
      say "Grafana at http://localhost:$(compose port grafana 3000 | sed 's/.*://')"
    fi
    ;;
  down)
    ensure_daemon
    compose down "$@"
    ;;
  compose)
    ensure_daemon
    use_buildkit_client
    ensure_secrets
    compose "$@"
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
