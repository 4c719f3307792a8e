#!/usr/bin/env bash
# `make demo`: meta-trains the MAML paper's sinusoid regression in one process and prints
# the meta-test result (post-adaptation MSE on unseen sinusoids). Usage: demo.sh BUILD_DIR
set -euo pipefail
build_dir="${1:-build}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${build_dir}/tools/metatrain-train"
if [[ ! -x "${bin}" ]]; then
  echo "demo: ${bin} not found; run 'make build' first" >&2
  exit 2
fi
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
out_dir="${build_dir}/demo"
mkdir -p "${out_dir}"

echo "== metatrain demo: MAML on sinusoid regression (Finn et al. 2017, section 5.1)"
echo "   10-shot tasks y = A sin(x - phase), A in [0.1, 5], phase in [0, pi]; net 1-40-40-1"
echo
"${bin}" --job "${root}/examples/sinusoid_maml.json" --out "${out_dir}/sinusoid_maml.pt"
echo
echo "'loss A -> B': mean squared error on held-out sinusoids before and after 10 gradient"
echo "steps on 10 examples from the meta-learned initialisation (± 95% confidence)."
