// Residual add fused into the next RMSNorm, one block per token: x and residual are read once, the sum
// stays in registers (up to CACHE values a thread) for the norm.
#include "common.cuh"

namespace {

constexpr int THREADS = 512, CACHE = 16;  // rows up to 8192 wide never re-read the residual

// residual[t] += x[t];  out[t] = residual[t] * rsqrt(mean(residual[t]^2) + eps) * w
// (the norm reads the sum rounded to A, as lc_add then lc_rmsnorm would; out may alias x)
template <typename A, typename W>
__global__ void __launch_bounds__(THREADS, 1) add_rmsnorm_kernel(const A *x, A *residual, const W *w, int64_t hidden,
                                                               float eps, A *out) {
  __shared__ float scratch[32];
  const int64_t row = int64_t(blockIdx.x) * hidden;
  auto add = [&](int64_t i) {
    const A sum = lc::from_f<A>(lc::to_f(residual[row + i]) + lc::to_f(x[row + i]));
    residual[row + i] = sum;
    return lc::to_f(sum);
  };
  float v[CACHE], ss = 0.0f;
#pragma unroll
  for (int k = 0; k < CACHE; ++k) {
    const int64_t i = threadIdx.x + int64_t(k) * THREADS;
    v[k] = i < hidden ? add(i) : 0.0f;
    ss += v[k] * v[k];
  }
  for (int64_t i = threadIdx.x + int64_t(CACHE) * THREADS; i < hidden; i += THREADS) {
    const float s = add(i);
    ss += s * s;
  }
  ss = lc::block_sum(ss, scratch);  // its barrier orders every read of x before any write of out
  const float inv = 1.0f / sqrtf(ss / float(hidden) + eps);
#pragma unroll
  for (int k = 0; k < CACHE; ++k) {
    const int64_t i = threadIdx.x + int64_t(k) * THREADS;
    if (i < hidden) out[row + i] = lc::from_f<A>(v[k] * inv * lc::to_f(w[i]));
  }
  for (int64_t i = threadIdx.x + int64_t(CACHE) * THREADS; i < hidden; i += THREADS)
    out[row + i] = lc::from_f<A>(lc::to_f(residual[row + i]) * inv * lc::to_f(w[i]));  // this thread's own write
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
      add_rmsnorm_kernel<A, W><<<unsigned(n_tokens), THREADS, 0, ctx->stream>>>(
          static_cast<const A *>(x), static_cast<A *>(residual), static_cast<const W *>(w), hidden, eps,
          static_cast<A *>(out));
    });
  });
  return lc::launched(ctx, "lc_add_rmsnorm");
}
