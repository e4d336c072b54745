// A CPU emulator of the CUDA subset lora-serve's kernels use: one block at a time, each CUDA thread a
// fiber; __syncthreads and warp shuffles are barriers (deadlocks and shuffles on partial warps abort).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__
#define __align__(n) alignas(n)

struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
inline uint2 make_uint2(unsigned a, unsigned b) { return {a, b}; }
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }

namespace emu {
float h2f(uint16_t h);
uint16_t f2h(float f);
inline float b2f(uint16_t b) { uint32_t u = uint32_t(b) << 16; float f; memcpy(&f, &u, 4); return f; }
inline uint16_t f2b(float f) {
  uint32_t x; memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 0x40);
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}
}  // namespace emu
struct __half { uint16_t bits = 0; };
struct __nv_bfloat16 { uint16_t bits = 0; };
inline float __half2float(__half h) { return emu::h2f(h.bits); }
inline __half __float2half_rn(float f) { __half h; h.bits = emu::f2h(f); return h; }
inline float __bfloat162float(__nv_bfloat16 b) { return emu::b2f(b.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { __nv_bfloat16 b; b.bits = emu::f2b(f); return b; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline float __fmul_rn(float a, float b) { return a * b; }
// one emulated thread runs at a time, so a plain read-modify-write is atomic
inline int atomicAdd(int *p, int v) { const int old = *p; *p = old + v; return old; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
template <class T> inline T __ldg(const T *p) { return *p; }
template <class A, class B> inline std::common_type_t<A, B> min(A a, B b) { return b < a ? std::common_type_t<A, B>(b) : std::common_type_t<A, B>(a); }
template <class A, class B> inline std::common_type_t<A, B> max(A a, B b) { return a < b ? std::common_type_t<A, B>(b) : std::common_type_t<A, B>(a); }
inline float max(float a, float b) { return fmaxf(a, b); }  // CUDA: NaN-ignoring
inline float min(float a, float b) { return fminf(a, b); }

namespace emu {
struct Fiber;
extern Fiber *cur;
extern uint3 block_idx;
extern dim3 block_dim, grid_dim;
const uint3 &tid();
void syncthreads();
uint64_t exchange(uint64_t v, int src_lane);  // all 32 lanes of the warp
int lane();
int thread_index();  // linear thread index in the block
void *dyn_smem();
}  // namespace emu
#define threadIdx (emu::tid())
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
inline void __syncthreads() { emu::syncthreads(); }
template <class T> T __shfl_sync(unsigned, T v, int src, int = 32) {
  static_assert(sizeof(T) <= 8, "shuffle width");
  uint64_t u = 0; memcpy(&u, &v, sizeof(T));
  u = emu::exchange(u, src & 31);
  T r; memcpy(&r, &u, sizeof(T)); return r;
}
template <class T> T __shfl_xor_sync(unsigned m, T v, int mask, int w = 32) { return __shfl_sync(m, v, emu::lane() ^ mask, w); }
// __syncwarp: a barrier of the whole warp (a partial warp or a divergent lane aborts / deadlocks).
inline void __syncwarp(unsigned = 0xffffffffu) { emu::exchange(0, emu::lane()); }
inline unsigned __ballot_sync(unsigned m, int pred) {
  unsigned v = pred ? 1u << emu::lane() : 0u;
  for (int o = 16; o > 0; o >>= 1) v |= __shfl_xor_sync(m, v, o);
  return v;
}
inline int __ffs(int x) { return __builtin_ffs(x); }

// ---- runtime API ----
typedef int cudaError_t;
enum : int { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInsufficientDriver = 35, cudaErrorStreamCaptureInvalidated = 901,
             cudaErrorIllegalState = 401 };
typedef struct emu_stream *cudaStream_t;
typedef struct emu_graph *cudaGraph_t;
typedef struct emu_graph *cudaGraphExec_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
enum { cudaStreamNonBlocking = 1 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrComputeCapabilityMajor = 75 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum { cudaHostAllocDefault = 0 };
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 };
cudaError_t cudaGetDeviceCount(int *);
cudaError_t cudaDriverGetVersion(int *);
cudaError_t cudaRuntimeGetVersion(int *);
cudaError_t cudaSetDevice(int);
cudaError_t cudaGetLastError();
const char *cudaGetErrorString(cudaError_t);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *, unsigned);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaDeviceGetAttribute(int *, cudaDeviceAttr, int);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
cudaError_t cudaMallocHost(void **, size_t);
cudaError_t cudaFreeHost(void *);
cudaError_t cudaHostAlloc(void **, size_t, unsigned);
template <class T> cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc(reinterpret_cast<void **>(p), n); }
template <class T> cudaError_t cudaMallocHost(T **p, size_t n) { return cudaMallocHost(reinterpret_cast<void **>(p), n); }
cudaError_t cudaMemGetInfo(size_t *, size_t *);
cudaError_t cudaMemcpyAsync(void *, const void *, size_t, cudaMemcpyKind, cudaStream_t);
cudaError_t cudaMemsetAsync(void *, int, size_t, cudaStream_t);
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode);
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *, cudaGraph_t, unsigned long long);
cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t);
cudaError_t cudaGraphDestroy(cudaGraph_t);
extern "C" void *emu_dlopen(const char *, int) noexcept;
extern "C" void *emu_dlsym(void *, const char *) noexcept;
extern "C" char *emu_dlerror() noexcept;

namespace emu {
// Dynamic shared memory over 48 KB needs cudaFuncSetAttribute first (as on the GPU); the emulator also
// refuses more than 99 KB, the smallest limit of the three targets (sm_89).
constexpr size_t SMEM_DEFAULT = 48 << 10, SMEM_MAX = 101376;
void set_max_dyn_smem(const void *fn, int bytes);
int max_dyn_smem(const void *fn);
void launch_error(const char *why);
}  // namespace emu
template <class F> cudaError_t cudaFuncSetAttribute(F *fn, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || size_t(value) > emu::SMEM_MAX) return cudaErrorInvalidValue;
  emu::set_max_dyn_smem(reinterpret_cast<const void *>(fn), value);
  return cudaSuccess;
}
namespace emu {
struct Cfg { dim3 grid, block; size_t smem; cudaStream_t stream; };
inline Cfg cfg(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = nullptr) { return {g, b, smem, s}; }
void enqueue(cudaStream_t s, std::function<void()> fn);
void run_grid(const Cfg &c, const std::function<void()> &body);
template <class... P, class... A> void launch(void (*k)(P...), Cfg c, A &&...args) {
  if (c.smem > SMEM_DEFAULT && c.smem > size_t(max_dyn_smem(reinterpret_cast<const void *>(k)))) {
    launch_error("dynamic shared memory over 48 KB without cudaFuncSetAttribute");
    return;
  }
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  enqueue(c.stream, [=]() { run_grid(c, [&]() { std::apply(k, params); }); });
}
}  // namespace emu
// cudaLaunchKernelEx: launch attributes (programmatic dependent launch) change nothing for grids run in turn.
enum cudaLaunchAttributeID { cudaLaunchAttributeProgrammaticStreamSerialization = 5 };
union cudaLaunchAttributeValue { int programmaticStreamSerializationAllowed; };
struct cudaLaunchAttribute { cudaLaunchAttributeID id; cudaLaunchAttributeValue val; };
// (fields in CUDA's order, named apart from the gridDim / blockDim macros above)
struct cudaLaunchConfig_t { dim3 grid, block; size_t smem; cudaStream_t stream; cudaLaunchAttribute *attrs; unsigned n_attrs; };
template <class... P, class... A> cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t *c, void (*k)(P...), A &&...args) {
  emu::launch(k, emu::cfg(c->grid, c->block, c->smem, c->stream), std::forward<A>(args)...);
  return cudaSuccess;
}
