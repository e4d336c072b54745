// RMSNorm, one block per token: x is read once and stays in registers (up to CACHE values a thread).
#include "common.cuh"

namespace {

constexpr int THREADS = 512, CACHE = 16;  // rows up to 8192 wide never re-read x

// out[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w   (computed as x * (1 / sqrt(ms + eps)) * w, like the twin)
// Each thread owns vectors of VEC values (16 bytes, or 1 value where the row is not aligned) and loads
// all its cached x and w at once, before the reduction.
template <typename A, typename W, int VEC>
__global__ void __launch_bounds__(THREADS) rmsnorm_kernel(const A *x, const W *w, int64_t hidden, float eps, A *out) {
  lc::pdl_trigger();  // see lc::launch_pdl
  lc::pdl_wait();
  using AV = lc::Pack<A, VEC>;
  using WV = lc::Pack<W, VEC>;
  constexpr int CACHED = CACHE / VEC;  // vectors a thread keeps
  __shared__ float scratch[32];
  const int64_t n = hidden / VEC;
  const AV *xv = reinterpret_cast<const AV *>(x + int64_t(blockIdx.x) * hidden);
  AV *ov = reinterpret_cast<AV *>(out + int64_t(blockIdx.x) * hidden);  // may alias x
  const WV *wv = reinterpret_cast<const WV *>(w);
  AV xr[CACHED];
  WV wr[CACHED];
  lc::load_cached<THREADS>(xv, n, xr);
  lc::load_cached<THREADS>(wv, n, wr);
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < CACHED; ++k)
    if (threadIdx.x + int64_t(k) * THREADS < n) ss += lc::pack_squares(xr[k]);
  for (int64_t j = threadIdx.x + int64_t(CACHED) * THREADS; j < n; j += THREADS) ss += lc::pack_squares(xv[j]);
  ss = lc::block_sum(ss, scratch);  // its barrier orders every read of x before any write of out
  const float inv = 1.0f / sqrtf(ss / float(hidden) + eps);
  lc::store_norm<THREADS>(ov, xr, wr, xv, wv, n, inv);
}

}  // namespace

extern "C" lc_status lc_rmsnorm(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                int64_t n_tokens, int64_t hidden, float eps, void *out) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && w && out, "lc_rmsnorm: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && n_tokens <= INT32_MAX && hidden > 0, "lc_rmsnorm: bad shape");
  if (n_tokens == 0) return LC_OK;
  lc_dispatch(act, [&](auto a) {
    lc_dispatch(wt, [&](auto wtag) {
      using A = decltype(a);
      using W = decltype(wtag);
      constexpr int VEC = 16 / sizeof(A);
      const auto xa = static_cast<const A *>(x);
      const auto wa = static_cast<const W *>(w);
      const auto oa = static_cast<A *>(out);
      if (hidden % VEC == 0 && lc::aligned16(x) && lc::aligned16(w) && lc::aligned16(out))
        lc::launch_pdl(ctx, rmsnorm_kernel<A, W, VEC>, dim3(unsigned(n_tokens)), dim3(THREADS), 0, xa, wa, hidden, eps, oa);
      else
        lc::launch_pdl(ctx, rmsnorm_kernel<A, W, 1>, dim3(unsigned(n_tokens)), dim3(THREADS), 0, xa, wa, hidden, eps, oa);
    });
  });
  return lc::launched(ctx, "lc_rmsnorm");
}
