// y[m, n] = (accumulate ? y : 0) + x[m, k] @ W[n, k]^T for m <= 8 (decode). Each warp owns one
// output column o and streams W[o, :] once in 16-byte loads, applying it to all m rows of x (small,
// L2-resident): the kernel reads W exactly once, at close to memory bandwidth.
#include <cstdint>

#include "gemv.cuh"

namespace {

constexpr int WARPS = 8;  // output columns per block

__device__ __forceinline__ void unpack8(const uint4 &v, float *out, __half) {
  const __half2 *h = reinterpret_cast<const __half2 *>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x, out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void unpack8(const uint4 &v, float *out, __nv_bfloat16) {
  const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x, out[2 * i + 1] = f.y;
  }
}

template <typename T, int M>
__global__ void __launch_bounds__(WARPS * 32) gemv_kernel(const T *x, const T *w, int64_t n, int64_t k, int accumulate, T *y) {
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t(blockIdx.x) * WARPS + (threadIdx.x >> 5);
  if (o >= n) return;
  const uint4 *wrow = reinterpret_cast<const uint4 *>(w + o * k);
  const int64_t chunks = k / 8;  // 16-byte vectors per row
  float acc[M];
#pragma unroll
  for (int i = 0; i < M; ++i) acc[i] = 0.0f;
#pragma unroll 4
  for (int64_t c = lane; c < chunks; c += 32) {
    float wf[8];
    unpack8(__ldg(wrow + c), wf, T());
#pragma unroll
    for (int i = 0; i < M; ++i) {
      float xf[8];
      unpack8(__ldg(reinterpret_cast<const uint4 *>(x + i * k) + c), xf, T());
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i] += wf[j] * xf[j];
    }
  }
#pragma unroll
  for (int i = 0; i < M; ++i) {
    const float s = lc::warp_sum(acc[i]);
    if (lane == 0) y[i * n + o] = lc::from_f<T>(accumulate ? lc::to_f(y[i * n + o]) + s : s);
  }
}

template <typename T, int M>
void launch(lc_ctx *ctx, const void *x, const void *w, int64_t n, int64_t k, int accumulate, void *y) {
  gemv_kernel<T, M><<<lc::blocks_for(n, WARPS), WARPS * 32, 0, ctx->stream>>>(
      static_cast<const T *>(x), static_cast<const T *>(w), n, k, accumulate, static_cast<T *>(y));
}

template <typename T>
void dispatch_m(lc_ctx *ctx, const void *x, const void *w, int64_t m, int64_t n, int64_t k, int accumulate, void *y) {
  switch (m) {
    case 1: launch<T, 1>(ctx, x, w, n, k, accumulate, y); break;
    case 2: launch<T, 2>(ctx, x, w, n, k, accumulate, y); break;
    case 3: launch<T, 3>(ctx, x, w, n, k, accumulate, y); break;
    case 4: launch<T, 4>(ctx, x, w, n, k, accumulate, y); break;
    case 5: launch<T, 5>(ctx, x, w, n, k, accumulate, y); break;
    case 6: launch<T, 6>(ctx, x, w, n, k, accumulate, y); break;
    case 7: launch<T, 7>(ctx, x, w, n, k, accumulate, y); break;
    default: launch<T, 8>(ctx, x, w, n, k, accumulate, y); break;
  }
}

}  // namespace

bool lc::gemv_fits(lc_dtype act, lc_dtype wt, const void *x, const void *w, const void *y, int64_t m, int64_t k) {
  const auto aligned = [](const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return act == wt && act != LC_F32 && m >= 1 && m <= GEMV_MAX_M && k % 8 == 0 && aligned(x) && aligned(w) && aligned(y);
}

void lc::gemv(lc_ctx *ctx, lc_dtype dt, const void *x, const void *w, int64_t m, int64_t n, int64_t k, int accumulate, void *y) {
  if (dt == LC_F16) dispatch_m<__half>(ctx, x, w, m, n, k, accumulate, y);
  else dispatch_m<__nv_bfloat16>(ctx, x, w, m, n, k, accumulate, y);
}
