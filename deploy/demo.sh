#!/usr/bin/env bash
# `make demo`: a metatrain coordinator and two workers on loopback meta-train the sinusoid
# MAML example (examples/sinusoid_maml.json); metactl submits it, shows live progress and
# prints the meta-test result. Every process started here is stopped on exit, error or
# Ctrl-C. Logs and the best checkpoint go to $BUILD/demo/.
# Secured as a real deployment is (docs/security.md): throw-away certificates and tokens
# are made with openssl in $BUILD/demo/tls (deploy/tls/make-certs.sh); the coordinator
# serves TLS and requires client certificates from workers (mutual TLS), workers send a
# join token, and metactl sends an admin token.
#
#   bash deploy/demo.sh [BUILD_DIR] [JOB.json]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
JOB="${2:-$ROOT/examples/sinusoid_maml.json}"
COORDINATOR="$BUILD/coordinator/metatrain-coordinator"
WORKER="$BUILD/worker/metatrain-worker"
METACTL="$BUILD/tools/metactl/metactl"
for bin in "$COORDINATOR" "$WORKER" "$METACTL"; do
  [[ -x "$bin" ]] || { echo "demo: $bin is missing; build first (make build)" >&2; exit 2; }
done

# One BLAS thread per process: the two workers share the cores.
export OPENBLAS_NUM_THREADS=1
if grep -qm1 avx512f /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-SkylakeX}"; fi

OUT="$BUILD/demo"
mkdir -p "$OUT"
rm -rf "$OUT/checkpoints"
TLS="$OUT/tls"
bash "$ROOT/deploy/tls/make-certs.sh" "$TLS" --force 2>/dev/null

# Each child runs in its own process group (setsid), so stopping it stops anything it
# started too, and a Ctrl-C in the terminal reaches only this script, which then stops
# the children in order.
PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  exit "$status"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, stopping everything" >&2; exit 130' INT TERM

echo "== metatrain demo: distributed MAML on sinusoid regression (Finn et al. 2017, section 5.1)"
echo "   10-shot tasks y = A sin(x - phase), A in [0.1, 5], phase in [0, pi]; net 1-40-40-1;"
echo "   one coordinator and two workers on loopback, each worker computing half of every meta-batch"
echo
echo "== starting metatrain-coordinator on a free loopback port (TLS, mutual TLS for workers, tokens in $TLS)"
setsid "$COORDINATOR" --listen=127.0.0.1:0 --checkpoint_dir="$OUT/checkpoints" \
  --tls_cert="$TLS/coordinator/tls.crt" --tls_key="$TLS/coordinator/tls.key" \
  --tls_client_ca="$TLS/coordinator/ca.crt" --tokens_file="$TLS/coordinator/tokens" \
  --worker_token_file="$TLS/coordinator/worker-tokens" \
  >"$OUT/coordinator.out" 2>"$OUT/coordinator.log" &
PIDS+=($!)
ADDRESS=""
for _ in $(seq 300); do
  ADDRESS="$(sed -n 's/^listening on \([0-9.]*:[0-9]*\)$/\1/p' "$OUT/coordinator.out" | head -1)"
  [[ -n "$ADDRESS" ]] && break
  kill -0 "${PIDS[0]}" 2>/dev/null || { cat "$OUT/coordinator.log" >&2; echo "demo: the coordinator exited" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$ADDRESS" ]] || { echo "demo: the coordinator did not report its port" >&2; exit 1; }
echo "   coordinator at $ADDRESS (log: $OUT/coordinator.log)"

for i in 1 2; do
  setsid "$WORKER" --coordinator "$ADDRESS" --threads 1 --name "demo-worker-$i" \
    --tls_ca="$TLS/worker/ca.crt" --tls_cert="$TLS/worker/tls.crt" --tls_key="$TLS/worker/tls.key" \
    --token_file="$TLS/worker/token" 2>"$OUT/worker-$i.log" &
  PIDS+=($!)
  echo "== started metatrain-worker demo-worker-$i (log: $OUT/worker-$i.log)"
done

METACTL_FLAGS=(--coordinator "$ADDRESS" --tls_ca="$TLS/client/ca.crt" --token_file="$TLS/client/admin.token")
echo "== metactl submit $(basename "$JOB") --watch   (metactl ${METACTL_FLAGS[*]} ...)"
set +e
"$METACTL" "${METACTL_FLAGS[@]}" submit "$JOB" --watch | tee "$OUT/watch.txt"
status=${PIPESTATUS[0]}
set -e
if [[ $status -eq 0 ]]; then
  echo
  echo "'loss before -> after': mean squared error on held-out sinusoids before and after a few"
  echo "gradient steps on 10 examples from the meta-learned initialisation (± 95% confidence)."
  job_id="$(head -1 "$OUT/watch.txt")"
  "$METACTL" "${METACTL_FLAGS[@]}" fetch "$job_id" --which best -o "$OUT/sinusoid_maml_best.pt"
  echo "== done: the best meta-parameters are in $OUT/sinusoid_maml_best.pt"
  echo "   (a PyTorch state_dict: torch.load('$OUT/sinusoid_maml_best.pt'))"
fi
exit "$status"
