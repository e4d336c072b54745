// Residual add fused into the next RMSNorm, one block per token: x and residual are read once, the sum
// stays in registers (up to CACHE values a thread) for the norm.
#include "common.cuh"

namespace {

constexpr int THREADS = 512, CACHE = 16;  // rows up to 8192 wide never re-read the residual

// residual[t] += x[t];  out[t] = residual[t] * rsqrt(mean(residual[t]^2) + eps) * w
// (the norm reads the sum rounded to A, as lc_add then lc_rmsnorm would; out may alias x)
// Each thread owns vectors of VEC values (16 bytes, or 1 value where the row is not aligned) and loads
// all its cached x, residual and w before its first store: the pointers may alias, so the compiler
// would not move a load above a store, and each element would cost a memory round trip.
// Two blocks an SM on the vector path (64 registers, no spills); the scalar path needs more registers.
template <typename A, typename W, int VEC>
__global__ void __launch_bounds__(THREADS, VEC > 1 ? 2 : 1)
    add_rmsnorm_kernel(const A *x, A *residual, const W *w, int64_t hidden, float eps, A *out) {
  lc::pdl_trigger();  // see lc::launch_pdl
  lc::pdl_wait();
  using AV = lc::Pack<A, VEC>;
  using WV = lc::Pack<W, VEC>;
  constexpr int CACHED = CACHE / VEC;  // vectors a thread keeps
  __shared__ float scratch[32];
  const int64_t row = int64_t(blockIdx.x) * hidden, n = hidden / VEC;
  const AV *xv = reinterpret_cast<const AV *>(x + row);
  AV *rv = reinterpret_cast<AV *>(residual + row), *ov = reinterpret_cast<AV *>(out + row);
  const WV *wv = reinterpret_cast<const WV *>(w);
  auto add = [](AV r, const AV a) {  // the sum rounded to A
#pragma unroll
    for (int e = 0; e < VEC; ++e) r.v[e] = lc::from_f<A>(lc::to_f(r.v[e]) + lc::to_f(a.v[e]));
    return r;
  };
  AV xr[CACHED], sr[CACHED];
  WV wr[CACHED];
  lc::load_cached<THREADS>(xv, n, xr);
  lc::load_cached<THREADS>(static_cast<const AV *>(rv), n, sr);
  lc::load_cached<THREADS>(wv, n, wr);
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < CACHED; ++k) {
    const int64_t j = threadIdx.x + int64_t(k) * THREADS;
    if (j < n) {
      sr[k] = add(sr[k], xr[k]);
      rv[j] = sr[k];
      ss += lc::pack_squares(sr[k]);
    }
  }
  for (int64_t j = threadIdx.x + int64_t(CACHED) * THREADS; j < n; j += THREADS) {
    const AV s = add(rv[j], xv[j]);
    rv[j] = s;
    ss += lc::pack_squares(s);
  }
  ss = lc::block_sum(ss, scratch);  // its barrier orders every read of x before any write of out
  const float inv = 1.0f / sqrtf(ss / float(hidden) + eps);
  lc::store_norm<THREADS>(ov, sr, wr, static_cast<const AV *>(rv), wv, n, inv);  // rv: this thread's own writes
}

}  // namespace

extern "C" lc_status lc_add_rmsnorm(lc_ctx *ctx, lc_dtype act, const void *x, void *residual, lc_dtype wt,
                                    const void *w, int64_t n_tokens, int64_t hidden, float eps, void *out) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && residual && w && out, "lc_add_rmsnorm: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && n_tokens <= INT32_MAX && hidden > 0, "lc_add_rmsnorm: bad shape");
  if (n_tokens == 0) return LC_OK;
  lc_dispatch(act, [&](auto a) {
    lc_dispatch(wt, [&](auto wtag) {
      using A = decltype(a);
      using W = decltype(wtag);
      constexpr int VEC = 16 / sizeof(A);
      const auto xa = static_cast<const A *>(x);
      const auto ra = static_cast<A *>(residual), oa = static_cast<A *>(out);
      const auto wa = static_cast<const W *>(w);
      if (hidden % VEC == 0 && lc::aligned16(x) && lc::aligned16(residual) && lc::aligned16(w) && lc::aligned16(out))
        lc::launch_pdl(ctx, add_rmsnorm_kernel<A, W, VEC>, dim3(unsigned(n_tokens)), dim3(THREADS), 0, xa, ra, wa, hidden, eps, oa);
      else
        lc::launch_pdl(ctx, add_rmsnorm_kernel<A, W, 1>, dim3(unsigned(n_tokens)), dim3(THREADS), 0, xa, ra, wa, hidden, eps, oa);
    });
  });
  return lc::launched(ctx, "lc_add_rmsnorm");
}
