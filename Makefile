# `make`: libloracpu.so (the C++ twin, tuned to this machine) always; libloracuda.so where nvcc and
# an NVIDIA driver exist (`make cuda` builds it anyway). `make build`: the single executable
# dist/lora-serve for any x86-64 Linux host (two portable CPU libraries, CUDA wherever nvcc exists).
# `make release`: a versioned tarball of the executable and the systemd unit, with its checksum.
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
CXX ?= g++
CPU_ARCH ?= native
CXXFLAGS ?= -O3 -march=$(CPU_ARCH) -std=c++17 -fPIC -Wall -Wextra -Werror=return-type
BUN ?= node_modules/.bin/bun

CPU_SRC := $(wildcard cuda/cpu/*.cpp)
CPU_HDR := cuda/loracuda.h cuda/host_allocations.h cuda/linear_then.h cuda/logit_rules.h $(wildcard cuda/cpu/*.h)

# CUDA: one object per .cu (so `make -j` compiles them in parallel), the runtime linked statically
# so the library loads where only the driver is installed; cuBLAS is dlopen'ed at context creation.
NVCC ?= $(shell command -v nvcc 2>/dev/null)
# sm_80 (A100), sm_89 (L4, L40S), sm_90 (H100, H200), and PTX that newer cards compile at load
CUDA_ARCH ?= -gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_89,code=sm_89 -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90
NVCCFLAGS ?= $(CUDA_ARCH) -O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden,-Wall -Icuda
CUDA_SRC := $(wildcard cuda/*.cu)
CUDA_OBJ := $(patsubst cuda/%.cu,build/cuda/%.o,$(CUDA_SRC))
CUDA_HDR := cuda/loracuda.h cuda/host_allocations.h cuda/linear_then.h cuda/logit_rules.h $(wildcard cuda/*.cuh)

HAVE_DRIVER := $(shell test -e /proc/driver/nvidia/version && echo yes)
CUDA_HERE := $(and $(NVCC),$(HAVE_DRIVER))
ifeq ($(CUDA_HERE)$(filter-out all,$(MAKECMDGOALS)),)
  $(info lora-serve: $(if $(NVCC),no NVIDIA driver here,no nvcc here): building the CPU library only ($(if $(NVCC),make cuda builds libloracuda.so anyway,install the CUDA toolkit for libloracuda.so)))
endif

all: build/libloracpu.so $(if $(CUDA_HERE),build/libloracuda.so)
cuda: build/libloracuda.so

build/libloracpu.so: $(CPU_SRC) $(CPU_HDR)
	@mkdir -p build
	$(CXX) $(CXXFLAGS) -shared -o $@ $(CPU_SRC)

# The executable's CPU libraries: x86-64-v3 (AVX2, FMA: 2013 on) and baseline x86-64, chosen at run time.
build/portable/libloracpu-x86-64-v3.so build/portable/libloracpu-x86-64.so: build/portable/libloracpu-%.so: $(CPU_SRC) $(CPU_HDR)
	@mkdir -p build/portable
	$(CXX) $(subst -march=$(CPU_ARCH),-march=$*,$(CXXFLAGS)) -mtune=generic -shared -o $@ $(CPU_SRC)

# each object names itself with its place in the list, so a parallel build shows its progress
CUDA_COUNT :=
$(foreach s,$(CUDA_SRC),$(eval CUDA_COUNT += x)$(eval CUDA_INDEX_$(s) := $(words $(CUDA_COUNT))))
build/cuda/%.o: cuda/%.cu $(CUDA_HDR)
	@mkdir -p build/cuda
	@echo "[cuda $(CUDA_INDEX_$<)/$(words $(CUDA_SRC))] $<"
	@$(NVCC) $(NVCCFLAGS) -c $< -o $@

build/libloracuda.so: $(CUDA_OBJ)
	$(NVCC) $(CUDA_ARCH) -cudart static -shared -o $@ $(CUDA_OBJ) -ldl

# The CUDA sources built for a CPU emulator (test/cuda-emu: each CUDA thread a fiber, cuBLAS done on
# the host) into build/emu/libloracuda.so, so test/gpu can check the kernels on machines without a GPU.
EMU_DIR := test/cuda-emu
EMU_OBJ := $(patsubst cuda/%.cu,build/emu/%.o,$(CUDA_SRC)) build/emu/emu.o
EMU_HDR := $(CUDA_HDR) $(wildcard $(EMU_DIR)/include/*.h)
EMU_CXXFLAGS := -O2 -std=c++17 -fPIC -fvisibility=hidden -fno-strict-aliasing -w -I$(EMU_DIR)/include -Icuda

build/emu/%.cpp: cuda/%.cu $(EMU_DIR)/prep.ts
	@mkdir -p build/emu
	$(BUN) $(EMU_DIR)/prep.ts $< $@

build/emu/%.o: build/emu/%.cpp $(EMU_HDR)
	$(CXX) $(EMU_CXXFLAGS) -include emu.h -Ddlopen=emu_dlopen -Ddlsym=emu_dlsym -Ddlerror=emu_dlerror -x c++ -c $< -o $@

build/emu/emu.o: $(EMU_DIR)/emu.cpp $(EMU_HDR)
	@mkdir -p build/emu
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

build/emu/libloracuda.so: $(EMU_OBJ)
	$(CXX) -shared -o $@ $(EMU_OBJ)

emu: build/emu/libloracuda.so

# baseline Bun (no AVX2 needed) so the executable starts on any x86-64 host
BUN_TARGET ?= bun-linux-x64-baseline
PORTABLE_CPU := build/portable/libloracpu-x86-64-v3.so build/portable/libloracpu-x86-64.so
VERSION := $(shell sed -n 's/^  "version": "\(.*\)",/\1/p' package.json)
RELEASE := dist/lora-serve-$(VERSION)-linux-x86_64

build: $(PORTABLE_CPU) $(if $(NVCC),build/libloracuda.so)
	$(BUN) build --compile --target=$(BUN_TARGET) src/cli/main.ts src/tokenizer/tokenizer-worker.ts src/grammar/grammar-worker.ts $^ --outfile dist/lora-serve

release: build
	rm -rf $(RELEASE) && mkdir -p $(RELEASE)
	cp dist/lora-serve deploy/lora-serve.service $(RELEASE)/
	tar -C dist -czf $(RELEASE).tar.gz $(notdir $(RELEASE))
	cd dist && sha256sum $(notdir $(RELEASE)).tar.gz > $(notdir $(RELEASE)).tar.gz.sha256
	@echo "wrote $(RELEASE).tar.gz and its .sha256"

# On a GPU host: build, run test/gpu against the CPU twin, write gpu-report.txt ($OUT or build/).
gpu-check:
	scripts/gpu-check.sh

clean:
	rm -rf build dist

.PHONY: all build clean cuda emu gpu-check release
