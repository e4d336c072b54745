// Shared pieces of the CUDA backend: the context, error reporting, argument checks, dtype helpers.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdint>
#include <string>
#include <utility>
#include <unordered_set>

// Only the ABI is exported (-fvisibility=hidden otherwise): the CPU twin, loaded in the same process
// by the GPU tests, defines internal functions of the same names (lc::fail) over another lc_ctx.
#pragma GCC visibility push(default)
#include "host_allocations.h"
#include "loracuda.h"
#pragma GCC visibility pop

// The few cuBLAS entry points we use, resolved with dlsym (no cuBLAS headers at build time).
struct lc_cublas {
  typedef int (*create_fn)(void **);
  typedef int (*destroy_fn)(void *);
  typedef int (*set_stream_fn)(void *, cudaStream_t);
  typedef int (*set_workspace_fn)(void *, void *, size_t);
  typedef int (*gemm_ex_fn)(void *, int, int, int, int, int, const void *, const void *, int, int, const void *, int,
                            int, const void *, void *, int, int, int, int);
  typedef const char *(*status_string_fn)(int);
  create_fn create = nullptr;
  destroy_fn destroy = nullptr;
  set_stream_fn set_stream = nullptr;
  set_workspace_fn set_workspace = nullptr;  // optional
  gemm_ex_fn gemm_ex = nullptr;
  status_string_fn status_string = nullptr;  // optional
};

// Device-side report of out-of-contract metadata (ids, slots, segments live in device memory, so
// they cannot be checked at the boundary without a host sync). Kernels skip the bad entry and
// store one of these codes; lc_sync / lc_download report it as LC_ERR_INVALID_ARGUMENT.
enum lc_device_error : int {
  LC_DEV_OK = 0,
  LC_DEV_EMBED_ID = 1,
  LC_DEV_KV_SLOT = 2,
  LC_DEV_ATTN_SHAPE = 3,
  LC_DEV_ATTN_SLOT = 4,
  LC_DEV_GATHER_ROW = 5,
  LC_DEV_LORA_SEGMENT = 6,
  LC_DEV_LOGIT_RULE = 7,
  LC_DEV_TOKEN_COUNT = 8,
};

// Bytes of the cuBLAS workspace set on the handle at creation (NVIDIA's advice for Hopper), so that
// GEMMs allocate nothing while a stream is captured into a graph.
constexpr size_t LC_CUBLAS_WORKSPACE = size_t(32) << 20;

// Graph capture on the context's stream (lc_graph_begin .. lc_graph_end). An op failing while
// recording ends the capture at once (the stream runs eagerly again) and leaves `failed`: every op
// then refuses until lc_graph_end reports the failure, so nothing meant for the graph runs eagerly.
enum class lc_capture { idle, recording, failed };

struct lc_ctx {
  int device = 0;
  cudaStream_t stream = nullptr;
  void *cublas = nullptr;       // cublasHandle_t
  void *cublas_ws = nullptr;    // LC_CUBLAS_WORKSPACE bytes
  int *dev_error = nullptr;     // one lc_device_error in device memory
  int *host_error = nullptr;    // pinned mirror, copied after each sync
  int sm_count = 0;
  bool pdl = false;  // programmatic dependent launch for lc::launch_pdl (Hopper on; LORA_SERVE_CUDA_PDL=0 off)
  bool fuse_gemv = true;  // lc_linear_silu_mul / _rope_store in one kernel at m = 1 (LORA_SERVE_CUDA_FUSE_GEMV=0 off)
  std::string last_error;
  std::unordered_set<void *> allocations;       // lc_alloc'd (cudaMalloc)
  lc::HostAllocations host_allocations;  // lc_host_alloc'd (cudaHostAlloc): base -> bytes
  lc_capture capture = lc_capture::idle;
  lc_status capture_status = LC_OK;  // why a capture failed, reported by lc_graph_end
  std::string capture_error;
};

namespace lc {

// Sets the context's last error and returns status; while recording a graph it also abandons the capture.
lc_status fail(lc_ctx *ctx, lc_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// LC_ERR_INVALID_ARGUMENT for a call that must not run while recording (upload, sync, alloc...);
// the capture goes on.
lc_status refuse_while_recording(lc_ctx *ctx, const char *op);
// Ends an active capture and drops what it recorded (after an error, or with the context).
void abandon_capture(lc_ctx *ctx);
const lc_cublas &cublas();  // loaded once per process; fields NULL where cuBLAS is missing
const std::string &cublas_error();  // why cublas() has NULL fields (empty where it loaded)
const char *cublas_status_text(int status);
// Makes ctx's device current and clears its last error; every entry point starts with it. After a
// failed capture it refuses (until lc_graph_end).
lc_status begin(lc_ctx *ctx, const char *op);
// After a launch: a launch failure (bad configuration, no kernel image for this GPU) -> LC_ERR_BACKEND.
lc_status launched(lc_ctx *ctx, const char *op);
// Waits for the stream, then reports a CUDA failure or a device-side contract violation (lc_sync, lc_download).
lc_status finish(lc_ctx *ctx, const char *op);

// Programmatic dependent launch (sm_90+). A kernel launched by launch_pdl may start while its stream
// predecessor finishes: it must call pdl_wait() before it reads anything an earlier kernel wrote or
// writes anything, in every block (so no grid completes before its predecessor, and completion stays
// ordered down the stream). pdl_trigger() lets the next kernel launch once every block of this one has
// started. Both are no-ops below sm_90 and where the launch had no attribute.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void prefetch_l2(const void *p) {
#if defined(__CUDA_ARCH__)
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#endif
}

// kernel<<<grid, block, smem, ctx->stream>>>(args...), allowed to overlap its predecessor where ctx->pdl.
template <typename... P, typename... A>
void launch_pdl(const lc_ctx *ctx, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A &&...args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  // {gridDim, blockDim, dynamicSmemBytes, stream, attrs, numAttrs}, by position (the emulator's gridDim is a macro)
  const cudaLaunchConfig_t cfg = {grid, block, smem, ctx->stream, attr, ctx->pdl ? 1u : 0u};
  cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
}

inline bool valid_dtype(lc_dtype dt) { return dt == LC_F32 || dt == LC_F16 || dt == LC_BF16; }
inline int64_t dtype_bytes(lc_dtype dt) { return dt == LC_F32 ? 4 : 2; }
inline unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

// ---- device dtype helpers: all arithmetic in fp32, round to nearest even on store ----
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
// The eight 2-byte values of one 16-byte vector, as floats.
template <typename T> __device__ __forceinline__ void unpack8(const uint4 &v, float (&out)[8]) {
  static_assert(sizeof(T) == 2, "eight values to a 16-byte vector");
  const T *e = reinterpret_cast<const T *>(&v);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = to_f(e[i]);
}

// N values of T moved by one load or store (a 16-byte vector for 8 halves; 32 bytes of float are two).
// Pass it by value: a copy is one vector access, a reference may be read element by element.
template <typename T, int N> struct alignas(sizeof(T) * N < 16 ? sizeof(T) * N : 16) Pack {
  T v[N];
};
__host__ __device__ inline bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// silu(g) * u = g / (1 + exp(-g)) * u: one expression for silu_mul_kernel and the gate|up GEMV's epilogue,
// so that the fused op gives the same bits.
__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// RMSNorm pieces over one Pack: the sum of squares, and x * inv * w rounded to A.
template <typename A, int N> __device__ __forceinline__ float pack_squares(const Pack<A, N> x) {
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < N; ++e) s += to_f(x.v[e]) * to_f(x.v[e]);
  return s;
}
template <typename A, typename W, int N>
__device__ __forceinline__ Pack<A, N> pack_norm(const Pack<A, N> x, const Pack<W, N> w, float inv) {
  Pack<A, N> o;
#pragma unroll
  for (int e = 0; e < N; ++e) o.v[e] = from_f<A>(to_f(x.v[e]) * inv * to_f(w.v[e]));
  return o;
}
// A row's vectors j = threadIdx.x + k THREADS below n, for k < CACHED, into registers (the norms' cache).
template <int THREADS, int CACHED, typename P>
__device__ __forceinline__ void load_cached(const P *row, int64_t n, P (&cached)[CACHED]) {
#pragma unroll
  for (int k = 0; k < CACHED; ++k) {
    const int64_t j = threadIdx.x + int64_t(k) * THREADS;
    if (j < n) cached[k] = row[j];
  }
}
// out[j] = x[j] * inv * w[j] over the thread's vectors: the cached ones from registers, the rest from x.
template <int THREADS, int CACHED, typename A, typename W, int N>
__device__ __forceinline__ void store_norm(Pack<A, N> *out, const Pack<A, N> (&x_cached)[CACHED],
                                           const Pack<W, N> (&w_cached)[CACHED], const Pack<A, N> *x,
                                           const Pack<W, N> *w, int64_t n, float inv) {
#pragma unroll
  for (int k = 0; k < CACHED; ++k) {
    const int64_t j = threadIdx.x + int64_t(k) * THREADS;
    if (j < n) out[j] = pack_norm(x_cached[k], w_cached[k], inv);
  }
  for (int64_t j = threadIdx.x + int64_t(CACHED) * THREADS; j < n; j += THREADS)
    out[j] = pack_norm(x[j], w[j], inv);  // x[j] is read by this thread just before it writes out[j]
}

// Records the first device-side contract violation (a plain store: any one code is enough).
__device__ __forceinline__ void report(int *err, int code) {
  if (*(volatile int *)err == 0) *(volatile int *)err = code;
}

// Warp and block reductions (blockDim.x a multiple of 32, at most 1024).
template <typename T> __device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T> __device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Every thread gets the block-wide sum; `scratch` holds 32 T and is reusable after return.
template <typename T> __device__ T block_sum(T v, T *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : T(0);
  return warp_sum(v);
}

}  // namespace lc

// Runs fn.template operator()<T>() with T the C++ type of dtype dt (caller checked it is valid).
template <typename F> inline void lc_dispatch(lc_dtype dt, F &&fn) {
  switch (dt) {
    case LC_F32: fn(float()); break;
    case LC_F16: fn(__half()); break;
    default: fn(__nv_bfloat16()); break;
  }
}

// Argument checks at the ABI boundary, in the CPU twin's style.
#define LC_REQUIRE(ctx, cond, ...) \
  do { \
    if (!(cond)) return lc::fail(ctx, LC_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)
#define LC_BEGIN(ctx) \
  do { \
    lc_status lc_begin_status_ = lc::begin(ctx, __func__); \
    if (lc_begin_status_ != LC_OK) return lc_begin_status_; \
  } while (0)
#define LC_REQUIRE_DTYPE(ctx, dt) LC_REQUIRE(ctx, lc::valid_dtype(dt), "%s: unknown dtype %d", __func__, int(dt))
// A CUDA runtime call that must succeed; its error text goes into the message.
#define LC_CUDA(ctx, call) \
  do { \
    cudaError_t lc_err_ = (call); \
    if (lc_err_ != cudaSuccess) \
      return lc::fail(ctx, lc_err_ == cudaErrorMemoryAllocation ? LC_ERR_OUT_OF_MEMORY : LC_ERR_BACKEND, \
                      "%s: %s failed: %s (%d)", __func__, #call, cudaGetErrorString(lc_err_), int(lc_err_)); \
  } while (0)
