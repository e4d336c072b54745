// RMSNorm, one block per token.
#include "common.cuh"

// out[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w   (computed as x * (1 / sqrt(ms + eps)) * w, like the twin)
template <typename A, typename W>
__global__ void rmsnorm_kernel(const A *x, const W *w, int64_t hidden, float eps, A *out) {
  __shared__ float scratch[32];
  const A *row = x + int64_t(blockIdx.x) * hidden;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float v = lc::to_f(row[i]);
    ss += v * v;
  }
  ss = lc::block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / float(hidden) + eps);
  A *o = out + int64_t(blockIdx.x) * hidden;  // may alias x: each element is read before it is written
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = lc::from_f<A>(lc::to_f(row[i]) * inv * lc::to_f(w[i]));
}

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
      rmsnorm_kernel<A, W><<<unsigned(n_tokens), 512, 0, ctx->stream>>>(
          static_cast<const A *>(x), static_cast<const W *>(w), hidden, eps, static_cast<A *>(out));
    });
  });
  return lc::launched(ctx, "lc_rmsnorm");
}
