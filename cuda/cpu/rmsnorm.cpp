#include "common.h"

extern "C" lc_status lc_rmsnorm(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                int64_t n_tokens, int64_t hidden, float eps, void *out) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && w && out, "lc_rmsnorm: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && hidden > 0, "lc_rmsnorm: bad shape");
  std::vector<float> row(hidden), weight(hidden);
  lc::load_row(w, wt, 0, hidden, weight.data());
  for (int64_t t = 0; t < n_tokens; ++t) {
    lc::load_row(x, act, t * hidden, hidden, row.data());
    lc::rmsnorm_row(row.data(), weight.data(), hidden, eps);
    lc::store_row(out, act, t * hidden, hidden, row.data());
  }
  return LC_OK;
}
