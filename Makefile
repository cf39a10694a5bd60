# SPDX-License-Identifier: Apache-2.0
# Entry points. Each target installs what is missing, configures CMake and
# runs; the real build description is CMakeLists.txt.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 15
JOBS       ?= $(shell nproc)

.PHONY: all deps build demo test unit asan fuzz e2e bench bench-kube clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@ninja -C $(BUILD) -j $(JOBS)

# The main job on the embedded default: the Alibaba 2023 trace replayed under
# every policy, seeds 42-51; then flexpu on Kubernetes: a real API server
# with 200 kwok nodes of 8 GPUs (the control plane is built from upstream
# the first time, about 8 minutes), 2,000 trace pods placed by
# flexpu-scheduler and, asking whole GPUs, by the default kube-scheduler.
demo: build
	@./$(BUILD)/flexpu-sim --quiet --out out/sim
	@echo
	@echo "flexpu on Kubernetes (bench/kube/run.sh): 200 nodes x 8 GPUs, 2,000 pods from the trace"
	@BUILD=$(BUILD) bench/kube/run.sh --nodes 200 --pods 2000 --stream-pods 0 --no-tuned \
	  --out out/demo-kubernetes.md

unit: build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	@CC=clang cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DFLEXPU_SANITIZE=ON >/dev/null
	@ninja -C $(BUILD_ASAN) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(BUILD_ASAN) --output-on-failure -j $(JOBS)

# libFuzzer on the trace, quantity, slice configuration and Kubernetes parsers, a short
# bounded run each.
fuzz: deps
	@CC=clang cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DFLEXPU_TESTS=OFF -DFLEXPU_FUZZ=ON \
	  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" >/dev/null
	@ninja -C $(BUILD_FUZZ) -j $(JOBS)
	@for f in quantity csv slice_conf kube node; do \
	  mkdir -p $(BUILD_FUZZ)/corpus-$$f && \
	  ./$(BUILD_FUZZ)/test/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	    $(BUILD_FUZZ)/corpus-$$f test/fuzz/corpus/$$f 2>&1 | tail -n 2 || exit 1; \
	done

test: unit asan fuzz

# End-to-end tests of the scheduler on a real control plane (etcd,
# kube-apiserver, kwok) built once from upstream Go modules into
# ~/.cache/flexpu (test/cluster/build-binaries.sh; minutes the first time).
e2e: build
	@test/e2e/scheduler_e2e.sh $(BUILD)
	@test/e2e/node_e2e.sh $(BUILD)

bench: build
	@bench/run.sh

# flexpu-scheduler against the default kube-scheduler on 1,000 kwok nodes of
# 8 GPUs and 10,000 trace pods (bench/kube/run.sh; about 12 minutes on 2
# cores). Smaller: make bench-kube KBENCH_ARGS="--nodes 50 --pods 500"
bench-kube: build
	@BUILD=$(BUILD) bench/kube/run.sh $(KBENCH_ARGS)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) out
