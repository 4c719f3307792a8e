#!/usr/bin/env bash
# Installs the Debian 12 packages metatrain needs, and only those that are missing.
# Idempotent: a second run installs nothing and takes well under a second.
set -euo pipefail

packages=(
  cmake make g++ pkg-config ccache
  libtorch-dev python3-torch
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev zlib1g-dev
  libgtest-dev libgmock-dev
  libpng-dev libzip-dev
  # TLS: OpenSSL's headers (key checks, token digests) and the openssl tool that
  # deploy/tls/make-certs.sh (make demo, the security tests) makes certificates with.
  libssl-dev openssl
  # tools/plot_validation.sh draws validation curves (docs/results.md) with gnuplot.
  gnuplot-nox
  dataset-fashion-mnist
  # make test checks the source (tests/style/): formatting, with the clang-format that
  # wrote the tree, and clang's thread-safety analysis, which GCC lacks. git lists the
  # files to check; python3 reads the build's compile_commands.json.
  clang-format-14 clang-14 git python3
  # make fuzz and the fuzz_run test (tests/fuzz): libFuzzer and clang's sanitizer runtimes.
  libclang-rt-14-dev
  # LibTorch calls whatever libblas.so.3 the alternatives system selects; the reference
  # BLAS is ~30x slower than OpenBLAS on the matrix products meta-learning is made of.
  # The core calls the same BLAS directly (common/meta/batched_matmul.h): libblas-dev has
  # the link-time libblas.so, whose soname, libblas.so.3, is that alternative at run time.
  libopenblas0-pthread libblas-dev
  # Deployment (README "Deploy"; tests/deploy): the Docker daemon and docker-compose v1 for
  # the compose cluster, debootstrap to make the debian:bookworm base image where no registry
  # is reachable, Prometheus's promtool (installing the package on a systemd machine also
  # starts a Prometheus service on :9090), and python3-yaml for the tests that read the files.
  docker.io docker-compose debootstrap prometheus python3-yaml
  # The partition test (tests/e2e/worker_faults_test.cc) cuts a worker's network inside a
  # network namespace of its own: ip netns and iptables.
  iproute2 iptables
)
# kubectl renders the Kubernetes manifests (kubectl kustomize); any kubectl serves, so Debian's
# is installed only when none is on PATH.
if ! command -v kubectl >/dev/null; then packages+=(kubernetes-client); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Make sure the optimised BLAS is the one LibTorch loads.
blas_alt=libblas.so.3-x86_64-linux-gnu
openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
if [[ -e $openblas ]] && [[ $(readlink -f /etc/alternatives/$blas_alt 2>/dev/null) != "$openblas" ]]; then
  echo "install-deps: selecting OpenBLAS as libblas.so.3"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" update-alternatives --set $blas_alt "$openblas"
fi
