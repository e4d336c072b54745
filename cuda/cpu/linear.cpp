#include "common.h"

// The reference GEMM: one weight row converted to fp32 at a time, reused by every token.
extern "C" lc_status lc_linear(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w, int64_t m,
                               int64_t n, int64_t k, int32_t accumulate, void *y) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && w && y, "lc_linear: NULL pointer");
  LC_REQUIRE(ctx, m >= 0 && n > 0 && k > 0, "lc_linear: bad shape m=%lld n=%lld k=%lld", (long long)m, (long long)n,
             (long long)k);
  if (m == 0) return LC_OK;
  std::vector<float> xs(m * k), wrow(k);
  lc::load_row(x, act, 0, m * k, xs.data());
  const bool f32_out = act == LC_F32;
  float *yf = static_cast<float *>(y);
  for (int64_t o = 0; o < n; ++o) {
    lc::load_row(w, wt, o * k, k, wrow.data());
    for (int64_t t = 0; t < m; ++t) {
      float v = lc::dot(xs.data() + t * k, wrow.data(), k);
      if (f32_out) {
        yf[t * n + o] = accumulate ? yf[t * n + o] + v : v;
      } else {
        lc::store(y, act, t * n + o, accumulate ? lc::load(y, act, t * n + o) + v : v);
      }
    }
  }
  return LC_OK;
}
