// y[1, n] = x[1, k] W[n, k]^T for decode at batch 1: a warp per R output rows (KS warps splitting k where
// the grid would fill under a wave), each lane keeping R * U sixteen-byte loads of W in flight. A step at
// batch 1 reads every weight once and does little else, so this op's bandwidth is the step's: cuBLAS's
// m = 1 kernels read at 3.3-3.9 TB/s on an H200 (copy: 4.26), and its split-K added a reduce kernel to
// two of the four projections per layer.
#include "gemv.cuh"

#include <algorithm>
#include <cstdlib>

namespace {

constexpr int WARPS = 4, THREADS = WARPS * 32, R = 2, U = 4;

// Rows n0 + (0:R) for n0 = (blockIdx.x * WARPS / KS + warp / KS) * R: each x vector (from L1: x is a few
// KB that every warp reads) serves R rows, and R * U loads of W are in flight per lane. With KS > 1 the
// KS warps of a row group split k (each takes every KS-th run of 32 * U vectors); the group's first warp
// adds their sums from shared memory in slice order and writes the rows.
template <typename T, int KS>
__global__ void __launch_bounds__(THREADS) gemv_kernel(const T *__restrict__ x, const T *__restrict__ w, int64_t n,
                                                        int64_t k, int accumulate, uint32_t prefetch_row, T *y) {
  constexpr int GROUPS = WARPS / KS;  // row groups in a block
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, slice = warp % KS;
  const int64_t n0 = (int64_t(blockIdx.x) * GROUPS + warp / KS) * R;
  const int rows = int(max(int64_t(0), min(int64_t(R), n - n0)));
  const uint4 *xv = reinterpret_cast<const uint4 *>(x);
  // (a warp past the last row loads nothing but still reaches the barrier of KS > 1)
  const int64_t n_vec = rows > 0 ? k / 8 : 0, v_first = slice * 32 * U + lane;
  // While the previous kernels finish (launch_pdl), pull this warp's first weights into L2: W is no
  // kernel's output, so it may be read before the wait. At batch 1 those kernels (norms, rope, attention)
  // leave DRAM mostly idle: prefetch_row bytes of each row (one bulk request per row; the host sizes it so
  // the resident blocks' requests fill at most half the L2), else the first U vectors the warp will load.
  lc::pdl_trigger();
  if (prefetch_row > 0) {
    if (slice == 0 && lane < rows) lc::prefetch_l2_bulk(w + (n0 + lane) * k, prefetch_row);
  } else {
    for (int r = 0; r < rows; ++r)
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (v_first + 32 * u < n_vec) lc::prefetch_l2(reinterpret_cast<const uint4 *>(w + (n0 + r) * k) + v_first + 32 * u);
  }
  lc::pdl_wait();
  float acc[R] = {};
  for (int64_t v0 = v_first; v0 < n_vec; v0 += 32 * U * KS) {
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
  if constexpr (KS == 1) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float v = lc::warp_sum(acc[r]);
      if (lane == 0 && r < rows) y[n0 + r] = lc::from_f<T>(accumulate ? lc::to_f(y[n0 + r]) + v : v);
    }
  } else {
    __shared__ float part[WARPS * R];  // [warp][row of its group]
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float v = lc::warp_sum(acc[r]);
      if (lane == 0) part[warp * R + r] = v;
    }
    __syncthreads();
    if (warp % KS == 0 && lane < rows) {
      float v = 0.0f;
#pragma unroll
      for (int s = 0; s < KS; ++s) v += part[(warp + s) * R + lane];
      y[n0 + lane] = lc::from_f<T>(accumulate ? lc::to_f(y[n0 + lane]) + v : v);
    }
  }
}

// Resident blocks of gemv_kernel per SM (68 registers: 7 on sm_90), asked once per process (0 if the
// query fails, which turns split-K off). The KS > 1 variants share it: 68 to 70 registers all take 72
// (the allocation unit is 8), and 32 bytes of shared memory limit nothing.
template <typename T> int resident_blocks() {
  static const int blocks = [] {
    int b = 0;
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, gemv_kernel<T, 1>, THREADS, 0) == cudaSuccess ? b : 0;
  }();
  return blocks;
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
    if constexpr (sizeof(T) == 2) {
      // Split k in the block (KS = 2 or 4 warps to a row group) where that brings the grid closer to one
      // wave of resident blocks. o and down (n = 4096) give 512 blocks: ~16 of the 28 warps an H200 SM
      // holds (7 blocks of 4), 4 KB of W in flight each, 64 KB per SM. KS = 2 keeps 4-warp blocks and
      // their registers: 1024 blocks fill the 924 slots (28 warps, 112 KB in flight per SM) plus 10 % of
      // a second wave. 8-warp blocks would keep 512 blocks at 3 a SM (24 warps), 1.3 waves.
      const int64_t slots = int64_t(ctx->sm_count) * resident_blocks<T>();
      const auto grid = [&](int ks) { return int64_t(blocks_for(n, WARPS * R / ks)); };
      int ks = 1;
      for (int s = 2; s <= 4; s *= 2)
        if (std::llabs(grid(s) - slots) < std::llabs(grid(ks) - slots)) ks = s;
      // the L2 budget over the rows that the first wave of blocks holds, in 16-byte units, up to a whole row
      const int64_t first_wave_rows = std::min(n, std::max(slots, int64_t(1)) * (WARPS * R / ks));
      int64_t prefetch_row = std::min(ctx->gemv_prefetch_budget / first_wave_rows / 16 * 16, k * int64_t(sizeof(T)));
      if (prefetch_row < 1024) prefetch_row = 0;  // too little to pay for the request: the per-vector hint
      const auto launch = [&](auto kernel) {
        launch_pdl(ctx, kernel, dim3(unsigned(grid(ks))), dim3(THREADS), 0, static_cast<const T *>(x),
                   static_cast<const T *>(w), n, k, accumulate, uint32_t(prefetch_row), static_cast<T *>(y));
      };
      if (ks == 4) launch(gemv_kernel<T, 4>);
      else if (ks == 2) launch(gemv_kernel<T, 2>);
      else launch(gemv_kernel<T, 1>);
    }
  });
  return launched(ctx, "lc_linear");
}

}  // namespace lc
