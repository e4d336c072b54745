#include "common.h"

// residual[t] += x[t];  out[t] = rmsnorm(residual[t]) * w, the norm reading the stored (rounded) residual
// so that it equals lc_add followed by lc_rmsnorm bit for bit.
extern "C" lc_status lc_add_rmsnorm(lc_ctx *ctx, lc_dtype act, const void *x, void *residual, lc_dtype wt,
                                    const void *w, int64_t n_tokens, int64_t hidden, float eps, void *out) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && residual && w && out, "lc_add_rmsnorm: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && hidden > 0, "lc_add_rmsnorm: bad shape");
  std::vector<float> row(hidden), add(hidden), weight(hidden);
  lc::load_row(w, wt, 0, hidden, weight.data());
  for (int64_t t = 0; t < n_tokens; ++t) {
    lc::load_row(residual, act, t * hidden, hidden, row.data());
    lc::load_row(x, act, t * hidden, hidden, add.data());
    for (int64_t i = 0; i < hidden; ++i) row[i] += add[i];
    lc::store_row(residual, act, t * hidden, hidden, row.data());
    lc::load_row(residual, act, t * hidden, hidden, row.data());  // the rounded sum, as lc_rmsnorm would read it
    lc::rmsnorm_row(row.data(), weight.data(), hidden, eps);
    lc::store_row(out, act, t * hidden, hidden, row.data());
  }
  return LC_OK;
}
