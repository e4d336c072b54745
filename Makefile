# libloracpu.so (the C++ twin) always; libloracuda.so wherever nvcc exists (compiled, not run, on
# machines without a GPU). `make build` also writes the single executable dist/lora-serve.
CXX ?= g++
CPU_ARCH ?= native
CXXFLAGS ?= -O3 -march=$(CPU_ARCH) -std=c++17 -fPIC -Wall -Wextra -Werror=return-type
BUN ?= node_modules/.bin/bun

CPU_SRC := $(wildcard cuda/cpu/*.cpp)
CPU_HDR := cuda/loracuda.h cuda/host_allocations.h cuda/linear_then.h $(wildcard cuda/cpu/*.h)

# CUDA: one object per .cu (so `make -j` compiles them in parallel), the runtime linked statically
# so the library loads where only the driver is installed; cuBLAS is dlopen'ed at context creation.
NVCC ?= $(shell command -v nvcc 2>/dev/null)
CUDA_ARCH ?= -gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_89,code=sm_89 -gencode=arch=compute_90,code=sm_90
NVCCFLAGS ?= $(CUDA_ARCH) -O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden,-Wall -Icuda
CUDA_SRC := $(wildcard cuda/*.cu)
CUDA_OBJ := $(patsubst cuda/%.cu,build/cuda/%.o,$(CUDA_SRC))
CUDA_HDR := cuda/loracuda.h cuda/host_allocations.h cuda/linear_then.h $(wildcard cuda/*.cuh)

all: build/libloracpu.so $(if $(NVCC),build/libloracuda.so)

build/libloracpu.so: $(CPU_SRC) $(CPU_HDR)
	@mkdir -p build
	$(CXX) $(CXXFLAGS) -shared -o $@ $(CPU_SRC)

build/cuda/%.o: cuda/%.cu $(CUDA_HDR)
	@mkdir -p build/cuda
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

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

build: all
	$(BUN) build --compile src/cli/main.ts src/tokenizer/tokenizer-worker.ts $(wildcard build/libloracpu.so build/libloracuda.so) --outfile dist/lora-serve

# On a GPU host: build, run test/gpu against the CPU twin, write gpu-report.txt ($OUT or build/).
gpu-check:
	scripts/gpu-check.sh

clean:
	rm -rf build dist

.PHONY: all build clean emu gpu-check
