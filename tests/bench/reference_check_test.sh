#!/bin/sh
# The task-batched PyTorch reference (bench/reference/task_batched.py) computes the same
# meta-gradients as the per-task loop, for the sinusoid and fully-connected workloads and
# both orders (the conv net's check takes minutes: run it by hand with
# `task_batched.py --check --workload omniglot_conv --meta_batch 4`).
# Usage: reference_check_test.sh SOURCE_DIR. Skipped (77) without Debian's python3-torch.
python=/usr/bin/python3
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "python3-torch is not installed: skipped"
  exit 77
fi
exec "$python" "$1/bench/reference/task_batched.py" --check --threads 1 \
  --workload sinusoid --workload omniglot_fc
