# libloracpu.so (the C++ twin) always; libloracuda.so wherever nvcc exists (compiled, not run, on
# machines without a GPU). `make build` also writes the single executable dist/lora-serve.
CXX ?= g++
CPU_ARCH ?= native
CXXFLAGS ?= -O3 -march=$(CPU_ARCH) -std=c++17 -fPIC -Wall -Wextra -Werror=return-type
BUN ?= node_modules/.bin/bun

CPU_SRC := $(wildcard cuda/cpu/*.cpp)
CPU_HDR := cuda/loracuda.h $(wildcard cuda/cpu/*.h)

all: build/libloracpu.so

build/libloracpu.so: $(CPU_SRC) $(CPU_HDR)
	@mkdir -p build
	$(CXX) $(CXXFLAGS) -shared -o $@ $(CPU_SRC)

build: all
	$(BUN) build --compile src/cli/main.ts $(wildcard build/libloracpu.so build/libloracuda.so) --outfile dist/lora-serve

clean:
	rm -rf build dist

.PHONY: all build clean
