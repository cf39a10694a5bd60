# SPDX-License-Identifier: Apache-2.0
# Entry points. Each target installs what is missing, configures CMake and
# runs; the real build description is CMakeLists.txt.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 15
JOBS       ?= $(shell nproc)

.PHONY: all deps build demo test unit asan fuzz e2e bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@ninja -C $(BUILD) -j $(JOBS)

# The main job on the embedded default: the Alibaba 2023 trace replayed under
# every policy, seeds 42-51.
demo: build
	@./$(BUILD)/flexpu-sim --quiet --out out/sim

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

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) out
