# SPDX-License-Identifier: Apache-2.0
# Entry points. Each target installs what is missing, configures CMake and
# runs; the real build description is CMakeLists.txt.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc)

.PHONY: all deps build demo test unit asan fuzz conformance image image-test e2e bench bench-gpuspec bench-kube bench-kube-queues bench-kube-peer bench-reuse clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@ninja -C $(BUILD) -j $(JOBS)

# The main job on the embedded default: the Alibaba 2023 trace replayed under
# every policy, seeds 42-51; then flexpu on Kubernetes: a real API server
# with 200 kwok nodes of 8 GPUs (the control plane is built from upstream
# the first time, about 10 minutes on 2 cores), 2,000 trace pods placed by
# flexpu-scheduler and, asking whole GPUs, by the default kube-scheduler.
demo: build
	@./$(BUILD)/flexpu-sim --quiet --out out/sim
	@echo
	@echo "flexpu on Kubernetes (bench/kube/run.sh): 200 nodes x 8 GPUs, 2,000 pods from the trace"
	@BUILD=$(BUILD) bench/kube/run.sh --nodes 200 --pods 2000 --stream-pods 0 --no-tuned \
	  --out out/demo-kubernetes.md

# The unit tests, with NVIDIA's real libcudart (a few MiB from PyPI, cached)
# loaded against the fake driver; the cuBLAS and NCCL ones are `make conformance`.
unit: build
	@scripts/fetch-nvidia-libs.sh cudart >/dev/null
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -LE 'cublas|nccl'

# The unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	@CC=clang cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DFLEXPU_SANITIZE=ON >/dev/null
	@ninja -C $(BUILD_ASAN) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(BUILD_ASAN) --output-on-failure -j $(JOBS) -LE 'cublas|nccl'

# libFuzzer on the trace, quantity, slice configuration, Kubernetes and MIG
# layout parsers, the node agent's device plugin, flexpu-remoted's worker
# (what an authenticated client sends) and the node agent's arbiter (what
# tenants write in their request files), a bounded run each (about 4 minutes
# in all).
# fuzz_remote finds a seeded bug fast: the D2H copy's ownership check removed,
# 0.8-1.0 s from an empty corpus (3 of 3 runs); fx_srv_owned off by one byte,
# 3.5-17 s (3 of 3); a GEMM operand's last column unchecked (matrix_ok),
# 8-41 s from its seeds (3 of 3), 56-98 s from an empty corpus. fuzz_arb: a freed tenant record keeping its GPU time
# (clear_tenant not clearing gpu_time_ns) is found at once from its seeds
# (corpus/arb/contend-leave-return), from an empty corpus in 148 s in 1 of 2
# runs of 150 s: its seeds carry the paths (contention, a slice leaving and
# coming back) that random bytes take minutes to spell.
# fuzz_node missed an overflow of GetPreferredAllocation for long: raw
# protobuf input did not find it in 10 minutes from an empty corpus (nor in 3
# runs of 5 minutes from the seeds), and with node.dict took 4-204 s in 4 of
# 5 runs. Its well-formed requests built from the bytes (input 6) find it in
# under 0.4 s (10 of 10 runs from an empty corpus, 2 cores); 120 s leaves the
# raw path most of its chance too. FUZZ_SECONDS=N runs each for N seconds instead. A
# finding fails the target, with the report and the input kept under
# $(BUILD_FUZZ)/artifacts-NAME/.
FUZZERS := quantity csv slice_conf kube node mig remote arb
FUZZ_SECONDS_quantity   ?= 15
FUZZ_SECONDS_csv        ?= 15
FUZZ_SECONDS_slice_conf ?= 15
FUZZ_SECONDS_kube       ?= 15
FUZZ_SECONDS_node       ?= 120
FUZZ_SECONDS_mig        ?= 10
FUZZ_SECONDS_remote     ?= 30
FUZZ_SECONDS_arb        ?= 30
fuzz_seconds = $(or $(FUZZ_SECONDS),$(FUZZ_SECONDS_$(1)))

# One fuzzer: scratch corpus first (libFuzzer adds to it), the checked-in
# seeds second, its dictionary when it has one. The log goes to a file, so
# the exit status is the fuzzer's and not that of a pipe.
define run_fuzzer
mkdir -p $(BUILD_FUZZ)/corpus-$(1) $(BUILD_FUZZ)/artifacts-$(1) && \
echo "fuzz_$(1): $(call fuzz_seconds,$(1)) s" && \
if $(BUILD_FUZZ)/test/fuzz/fuzz_$(1) -max_total_time=$(call fuzz_seconds,$(1)) \
     -print_final_stats=0 -artifact_prefix=$(BUILD_FUZZ)/artifacts-$(1)/ \
     $(if $(wildcard test/fuzz/$(1).dict),-dict=test/fuzz/$(1).dict) \
     $(BUILD_FUZZ)/corpus-$(1) test/fuzz/corpus/$(1) >$(BUILD_FUZZ)/fuzz-$(1).log 2>&1; then \
  tail -n 1 $(BUILD_FUZZ)/fuzz-$(1).log; \
else \
  tail -n 80 $(BUILD_FUZZ)/fuzz-$(1).log; \
  echo "fuzz_$(1) failed: the input is in $(BUILD_FUZZ)/artifacts-$(1)/"; false; \
fi
endef

fuzz: deps
	@CC=clang cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DFLEXPU_TESTS=OFF -DFLEXPU_FUZZ=ON \
	  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" >/dev/null
	@ninja -C $(BUILD_FUZZ) -j $(JOBS)
	@$(foreach f,$(FUZZERS),$(call run_fuzzer,$(f)) && ) true

# NVIDIA's real cuBLAS 12 and 13 and NCCL 2.32 for CUDA 12 and 13 (about
# 1.5 GiB of wheels from PyPI, fetched once into ~/.cache/flexpu/nvidia)
# against the fake driver with the runtime library preloaded: every entry
# point they ask for is answered.
conformance: build
	@scripts/fetch-nvidia-libs.sh cublas >/dev/null
	@scripts/fetch-nvidia-libs.sh nccl >/dev/null
	@ctest --test-dir $(BUILD) --output-on-failure -L 'cublas|nccl'

# The container image without a Docker daemon (scripts/build-image.sh): a
# Release build in build-image/, the Debian packages its libraries come from,
# an OCI layout and oci-archive in out/image/ written by umoci.
image: deps
	@scripts/build-image.sh --out out/image

# The image is complete: unpacked, each binary finds every library inside it
# and runs (test/image/image_test.sh).
image-test: image
	@test/image/image_test.sh out/image

test: unit asan fuzz conformance image-test

# End-to-end tests of the scheduler on a real control plane (etcd,
# kube-apiserver, kwok; kube-scheduler as the reference for the scheduling
# rules in rules_e2e.sh; the real kubelet, on a CRI runtime that runs
# nothing, for the node agent in kubelet_e2e.sh) built once from upstream Go
# modules into ~/.cache/flexpu (test/cluster/build-binaries.sh; minutes the
# first time). helm_e2e.sh installs the Helm chart, and runs flexpu-scheduler
# from make image's image when there is one. queue_crd_e2e.sh checks the Queue
# CRD's schema and the scheduler's eviction, nomination and queue status
# calls (test/e2e/kube_call.c) with its service account; queue_e2e.sh, the
# scheduler's queues (guarantees, borrowing, limits) and gangs (all or none);
# usage_e2e.sh, the node agent's usage feed (flexpu.io/gpu-usage);
# borrow_e2e.sh, an opportunistic pod borrowing an idle GPU and reclaimed;
# remote_e2e.sh, a pod on a node without GPUs with a remote slice served by
# the GPU node's agent (issue 17);
# borrow_mem_e2e.sh, a borrower in memory an owner reserved, killed when the
# owner's allocation needs it (the host's cgroup v2 when writable);
# remote_borrow_e2e.sh, the same for a remote slice's owner, its server's
# worker waiting while the GPU node's agent kills the borrower;
# mig_e2e.sh, the node agent's MIG mode (MIG devices allocated whole).
e2e: build
	@test/e2e/scheduler_e2e.sh $(BUILD)
	@test/e2e/rules_e2e.sh $(BUILD)
	@test/e2e/node_e2e.sh $(BUILD)
	@test/e2e/usage_e2e.sh $(BUILD)
	@test/e2e/borrow_e2e.sh $(BUILD)
	@test/e2e/remote_e2e.sh $(BUILD)
	@test/e2e/borrow_mem_e2e.sh $(BUILD)
	@test/e2e/remote_borrow_e2e.sh $(BUILD)
	@test/e2e/mig_e2e.sh $(BUILD)
	@test/e2e/kubelet_e2e.sh $(BUILD)
	@test/e2e/admission_e2e.sh $(BUILD)
	@test/e2e/queue_crd_e2e.sh $(BUILD)
	@test/e2e/queue_e2e.sh $(BUILD)
	@test/e2e/helm_e2e.sh $(BUILD) $(if $(wildcard out/image/oci/index.json),out/image/oci:dev)

# Every scheduling result: bench/run.sh (the public traces, the generated and
# artifact variants, the timed and reuse replays, speed), then the variants
# where pods name GPU models (bench/gpuspec.sh), so one command prints
# flexpu against fgd and bestfit on every variant (issue 13). ARTIFACT=DIR
# adds the FGD artifact's variants to both. About 25 minutes on 2 cores.
bench: build
	@ARTIFACT=$(ARTIFACT) bench/run.sh
	@BUILD=$(BUILD) ARTIFACT=$(ARTIFACT) bench/gpuspec.sh

# flexpu, fgd and bestfit on generated trace variants where many pods name
# the GPU models they accept (bench/gpuspec.sh; 10-14 minutes on 2 cores; not in CI).
# ARTIFACT=DIR adds the FGD artifact's gpuspec variants from a local copy.
bench-gpuspec: build
	@BUILD=$(BUILD) ARTIFACT=$(ARTIFACT) bench/gpuspec.sh

# flexpu-scheduler against the default kube-scheduler on 1,000 kwok nodes of
# 8 GPUs and 10,000 trace pods (bench/kube/run.sh; about 12 minutes on 2
# cores). Smaller: make bench-kube KBENCH_ARGS="--nodes 50 --pods 500"
bench-kube: build
	@BUILD=$(BUILD) bench/kube/run.sh $(KBENCH_ARGS)

# flexpu-scheduler alone with its pods in 4 Queues and pod groups of 4
# (issue 15's target: at least 150 pods/s on 1,000 nodes x 8 GPUs).
bench-kube-queues: build
	@BUILD=$(BUILD) bench/kube/run.sh --flexpu-only --queues 4 --gang-size 4 \
	  --out bench/results/kube-queues.md $(KBENCH_ARGS)

# The same workload through flexpu-scheduler (GPU shares, then whole GPUs)
# and the peer scheduler-plugins (Coscheduling + CapacityScheduling, built
# once by test/cluster/build-binaries.sh --peers, about 5 minutes on 2 cores):
# issue 15's side by side. Writes the same file as bench-kube-queues, with
# the peer's column. Never in CI.
bench-kube-peer: build
	@BUILD=$(BUILD) bench/kube/run.sh --flexpu-only --flexpu-whole --peer --queues 4 \
	  --gang-size 4 --out bench/results/kube-queues.md $(KBENCH_ARGS)

# Issue 16's simulation (docs/REUSE.md): whole-GPU, flexpu and flexpu with
# reuse of reserved-but-idle GPUs in one run, on held-out seeds, and a sweep
# of the owners' share of GPU compute (bench/reuse.sh; about 25 minutes on
# 2 cores). Writes bench/results/reuse/.
bench-reuse: build
	@BUILD=$(BUILD) bench/reuse.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) build-image out
