// y[1, n] = x[1, k] W[n, k]^T for decode at batch 1: a warp per R output rows, each lane keeping
// R * U sixteen-byte loads of W in flight. A step at batch 1 reads every weight once and does little else,
// so this op's bandwidth is the step's: cuBLAS's m = 1 kernels read at 3.3-3.9 TB/s on an H200
// (copy: 4.26), and split-K added a reduce kernel to two of the four projections per layer.
#include "gemv.cuh"

namespace {

constexpr int WARPS = 4, THREADS = WARPS * 32, R = 2, U = 4;

// Rows n0 + (0:R) for n0 = (blockIdx.x * WARPS + warp) * R: each x vector (from L1: x is a few KB
// that every warp reads) serves R rows, and R * U loads of W are in flight per lane.
template <typename T>
__global__ void __launch_bounds__(THREADS) gemv_kernel(const T *__restrict__ x, const T *__restrict__ w, int64_t n,
                                                        int64_t k, int accumulate, T *y) {
  const int lane = threadIdx.x & 31;
  const int64_t n0 = (int64_t(blockIdx.x) * WARPS + (threadIdx.x >> 5)) * R;
  const int rows = int(max(int64_t(0), min(int64_t(R), n - n0)));
  const uint4 *xv = reinterpret_cast<const uint4 *>(x);
  const int64_t n_vec = k / 8;
  // While the previous kernel finishes (launch_pdl), pull this warp's first weights into L2: W is no
  // kernel's output, so it may be read before the wait.
  lc::pdl_trigger();
  for (int r = 0; r < rows; ++r)
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (lane + 32 * u < n_vec) lc::prefetch_l2(reinterpret_cast<const uint4 *>(w + (n0 + r) * k) + lane + 32 * u);
  lc::pdl_wait();
  if (rows == 0) return;  // uniform across the warp
  float acc[R] = {};
  for (int64_t v0 = lane; v0 < n_vec; v0 += 32 * U) {
    uint4 a[R][U], b[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (v0 + 32 * u >= n_vec) break;
      b[u] = __ldg(xv + v0 + 32 * u);
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (r < rows) a[r][u] = reinterpret_cast<const uint4 *>(w + (n0 + r) * k)[v0 + 32 * u];
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (v0 + 32 * u >= n_vec) break;
      float fb[8];
      lc::unpack8<T>(b[u], fb);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float fa[8];
        lc::unpack8<T>(a[r][u], fa);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r] += fa[i] * fb[i];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float v = lc::warp_sum(acc[r]);
    if (lane == 0 && r < rows) y[n0 + r] = lc::from_f<T>(accumulate ? lc::to_f(y[n0 + r]) + v : v);
  }
}

}  // namespace

namespace lc {

bool gemv_fits(lc_dtype act, lc_dtype wt, int64_t m, int64_t k, const void *x, const void *w) {
  return m == 1 && act == wt && act != LC_F32 && k % 8 == 0 && lc::aligned16(x) &&
         lc::aligned16(w);
}

lc_status linear_gemv(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t n, int64_t k,
                      int32_t accumulate, void *y) {
  lc_dispatch(act, [&](auto a) {
    using T = decltype(a);
    if constexpr (sizeof(T) == 2)
      launch_pdl(ctx, gemv_kernel<T>, dim3(blocks_for(n, WARPS * R)), dim3(THREADS), 0, static_cast<const T *>(x),
                 static_cast<const T *>(w), n, k, accumulate, static_cast<T *>(y));
  });
  return launched(ctx, "lc_linear");
}

}  // namespace lc
