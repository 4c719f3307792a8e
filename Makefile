# The two commands a user needs: `make demo` and `make test`. Both install missing
# Debian packages first, then configure and build.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)

# OpenBLAS 0.3.21 does not recognise recent AVX-512 CPUs and falls back to slower
# kernels; one BLAS thread per process keeps several workers from oversubscribing cores.
export OPENBLAS_NUM_THREADS ?= 1
ifneq ($(shell grep -m1 -o avx512f /proc/cpuinfo 2>/dev/null),)
export OPENBLAS_CORETYPE ?= SkylakeX
endif

.PHONY: all deps configure build test demo bench clean format test-asan fuzz

all: build

deps:
	@bash deploy/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build dir
# (docs/security.md "Fuzzing and sanitizers"). -O1 -g1: readable stacks, a cheaper build.
# The sanitizer options reach every test through cmake/MetatrainTest.cmake.
ASAN_BUILD_DIR ?= build-asan
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD_DIR) -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g1 -DNDEBUG" -DMETATRAIN_SANITIZE=address,undefined >/dev/null
	@cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	cd $(ASAN_BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 1800

# The libFuzzer targets (tests/fuzz), built with clang-14 + ASan + UBSan in their own build dir
# and run for a bounded number of inputs each; fails on any crash, leak or timeout.
FUZZ_BUILD_DIR ?= build-fuzz
fuzz: deps
	@bash tests/fuzz/run_fuzzers.sh $(FUZZ_BUILD_DIR)

demo: build
	@bash deploy/demo.sh $(BUILD_DIR)

bench: build
	@bash bench/run_all.sh $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR)

format:
	@git ls-files '*.h' '*.cc' | xargs clang-format-14 -i

# The docker-compose cluster (docker-compose.yml, README "Deploy"): builds the images from
# deploy/docker/, starts the coordinator (published on localhost:50051, METATRAIN_PORT),
# $(WORKERS) workers (default 2), Prometheus and, where its image can be had, Grafana, and
# returns once the coordinator is healthy. cluster-down stops it and keeps the volumes.
.PHONY: cluster-up cluster-down
cluster-up: deps
	@bash deploy/docker/cluster.sh up

cluster-down:
	@bash deploy/docker/cluster.sh down
