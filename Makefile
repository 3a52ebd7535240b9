# Front end for CMake. `make deps && make run` builds r1 and runs it on the bundled model;
# `make test` builds and runs the test suite.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=
MODEL ?=
PROMPT ?= def fibonacci(n):
ARGS ?=
DEMO_MODEL := $(BUILD)/tiny-qwen2-py-q8.r1m
# Handed to the recipes through the environment, unexpanded, so that quotes and $ in them reach
# r1 as typed.
export R1_MODEL := $(value MODEL)
export R1_PROMPT := $(value PROMPT)

.PHONY: all deps configure test run clean bundle asan

all: configure
	cmake --build $(BUILD) -j$(JOBS) --target r1

deps:
	./scripts/deps.sh

configure:
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

test: configure
	cmake --build $(BUILD) -j$(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# The main job: pack the bundled trained model and let it write Python (it is a code model, with
# no chat training: --raw). With MODEL (an .r1m, a GGUF file or a Hugging Face directory) the
# prompt goes through the model's chat template. ARGS: more flags for r1 run.
$(DEMO_MODEL): all
	$(BUILD)/r1 pack tests/fixtures/models/tiny-qwen2-py -o $@ --quant q8 -q

run: all $(if $(MODEL),,$(DEMO_MODEL))
ifeq ($(MODEL),)
	$(BUILD)/r1 run -m $(DEMO_MODEL) --raw --temp 0 -n 64 -p "$$R1_PROMPT" $(ARGS)
else
	$(BUILD)/r1 run -m "$$R1_MODEL" -p "$$R1_PROMPT" $(ARGS)
endif

# The hostile-input job: a clang ASan + UBSan build runs the whole test suite, then every
# fuzzer for FUZZ_SECONDS each from seeds made of the fixtures.
FUZZ_SECONDS ?= 20
asan:
	@test -f build-asan/CMakeCache.txt || CC=clang CXX=clang++ cmake -S . -B build-asan \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DR1_SANITIZE=ON -DR1_FUZZ=ON -DR1_CUDA=OFF
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  ctest --output-on-failure -j$(JOBS)
	./fuzz/run.sh build-asan $(FUZZ_SECONDS)

# A CUDA build that runs on a machine without the Debian packages (the GPU machine): bundle/r1
# and bundle/r1_cuda_tests, with machine code for sm_80 (A100), sm_89 (L4, RTX 40xx) and sm_90
# (H100, H200); third-party libraries linked statically where Debian ships them
# static, the rest copied into bundle/lib (found through the binaries' $$ORIGIN/lib rpath).
BUNDLE_BUILD ?= build-bundle
bundle:
	@test -f $(BUNDLE_BUILD)/CMakeCache.txt || cmake -S . -B $(BUNDLE_BUILD) -DCMAKE_BUILD_TYPE=Release -DR1_CUDA=ON -DR1_STATIC=ON \
	  -DCMAKE_CUDA_ARCHITECTURES="80;89;90"
	cmake --build $(BUNDLE_BUILD) -j$(JOBS) --target r1 r1_cuda_tests
	rm -rf bundle && mkdir -p bundle/lib
	cp $(BUNDLE_BUILD)/r1 $(BUNDLE_BUILD)/r1_cuda_tests bundle/
	ldd bundle/r1 bundle/r1_cuda_tests | awk '$$3 ~ /^\// {print $$3}' | sort -u | \
	  grep -v -E '/(libc|libm|libpthread|libdl|librt|ld-linux-x86-64)\.so' | xargs -r -I{} cp -L {} bundle/lib/
	@du -sh bundle

clean:
	rm -rf $(BUILD)
