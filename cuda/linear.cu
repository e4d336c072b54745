// Dense projection: one row (decode at batch 1) through gemv.cu; cuBLAS GemmEx where activations and
// weights share a dtype; else a tiled kernel.
#include <type_traits>

#include "common.cuh"
#include "gemv.cuh"

namespace {

// cuBLAS enum values (cublas_api.h / library_types.h), declared here since the headers are absent.
constexpr int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
constexpr int CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14;
constexpr int CUBLAS_COMPUTE_32F = 68;  // fp32 accumulation, no TF32 / reduced-precision shortcuts
constexpr int CUBLAS_GEMM_DEFAULT = -1;

int cuda_type(lc_dtype dt) { return dt == LC_F32 ? CUDA_R_32F : dt == LC_F16 ? CUDA_R_16F : CUDA_R_16BF; }

constexpr int TILE = 64, TILE_K = 16, THREADS = 256;  // each thread computes a 4 x 4 patch of the tile

// y[m, n] = (accumulate ? y : 0) + x[m, k] @ W[n, k]^T, for act != wt (cuBLAS needs equal A/B types).
// Block (bx, by) owns y[by*64 .. +64, bx*64 .. +64]; x and W tiles are staged in shared memory as fp32.
template <typename A, typename W>
__global__ void __launch_bounds__(THREADS) gemm_mixed_kernel(const A *x, const W *w, int64_t m, int64_t n,
                                                                 int64_t k, int accumulate, A *y) {
  __shared__ float xs[TILE_K][TILE + 1];
  __shared__ float ws[TILE_K][TILE + 1];
  const int64_t row0 = int64_t(blockIdx.y) * TILE, col0 = int64_t(blockIdx.x) * TILE;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;  // rows tr + 16*i, cols tc + 16*j
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < k; k0 += TILE_K) {
    for (int e = threadIdx.x; e < TILE * TILE_K; e += THREADS) {
      const int r = e / TILE_K, c = e % TILE_K;  // consecutive threads read consecutive k
      const int64_t kk = k0 + c;
      xs[c][r] = (row0 + r < m && kk < k) ? lc::to_f(x[(row0 + r) * k + kk]) : 0.0f;
      ws[c][r] = (col0 + r < n && kk < k) ? lc::to_f(w[(col0 + r) * k + kk]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < TILE_K; ++c) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = xs[c][tr + 16 * i], b[i] = ws[c][tc + 16 * i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t r = row0 + tr + 16 * i, c = col0 + tc + 16 * j;
      if (r < m && c < n) {
        const float v = accumulate ? lc::to_f(y[r * n + c]) + acc[i][j] : acc[i][j];
        y[r * n + c] = lc::from_f<A>(v);
      }
    }
}

}  // namespace

extern "C" lc_status lc_linear(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w, int64_t m,
                               int64_t n, int64_t k, int32_t accumulate, void *y) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && w && y, "lc_linear: NULL pointer");
  LC_REQUIRE(ctx, m >= 0 && n > 0 && k > 0, "lc_linear: bad shape m=%lld n=%lld k=%lld", (long long)m, (long long)n,
             (long long)k);
  LC_REQUIRE(ctx, m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX, "lc_linear: a dimension exceeds INT32_MAX");
  if (m == 0) return LC_OK;
  if (lc::gemv_fits(act, wt, m, k, x, w)) return lc::linear_gemv(ctx, act, x, w, n, k, accumulate, y);
  if (act == wt) {
    // Row-major y[m,n] = x[m,k] W[n,k]^T is column-major y^T[n,m] = op_T(W as [k,n]) * (x^T as [k,m]).
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const int t = cuda_type(act);
    const int st = lc::cublas().gemm_ex(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, w, t,
                                        int(k), x, t, int(k), &beta, y, t, int(n), CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT);
    if (st != 0) {
      const lc_cublas &cb = lc::cublas();
      return lc::fail(ctx, LC_ERR_BACKEND, "lc_linear: cublasGemmEx(m=%lld n=%lld k=%lld) failed: %s (%d)",
                      (long long)m, (long long)n, (long long)k, cb.status_string ? cb.status_string(st) : "", st);
    }
    return LC_OK;
  }
  LC_REQUIRE(ctx, (m + TILE - 1) / TILE <= 65535, "lc_linear: m=%lld too large for the mixed-dtype kernel", (long long)m);
  const dim3 grid(lc::blocks_for(n, TILE), lc::blocks_for(m, TILE));
  lc_dispatch(act, [&](auto a) {
    lc_dispatch(wt, [&](auto wtag) {
      using A = decltype(a);
      using W = decltype(wtag);
      if constexpr (!std::is_same<A, W>::value)  // equal dtypes went to cuBLAS above
        gemm_mixed_kernel<A, W><<<grid, THREADS, 0, ctx->stream>>>(
            static_cast<const A *>(x), static_cast<const W *>(w), m, n, k, accumulate, static_cast<A *>(y));
    });
  });
  return lc::launched(ctx, "lc_linear");
}
