// Small row-wise ops: SiLU-gated product, residual add, row gather.
#include "common.h"

extern "C" lc_status lc_silu_mul(lc_ctx *ctx, lc_dtype act, const void *gate_up, int64_t n_tokens, int64_t inter,
                                 void *out) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, gate_up && out, "lc_silu_mul: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && inter > 0, "lc_silu_mul: bad shape");
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t i = 0; i < inter; ++i) {
      const float g = lc::load(gate_up, act, t * 2 * inter + i), u = lc::load(gate_up, act, t * 2 * inter + inter + i);
      lc::store(out, act, t * inter + i, g / (1.0f + std::exp(-g)) * u);
    }
  return LC_OK;
}

extern "C" lc_status lc_add(lc_ctx *ctx, lc_dtype act, const void *x, int64_t n, void *y) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, x && y && n >= 0, "lc_add: bad argument");
  for (int64_t i = 0; i < n; ++i) lc::store(y, act, i, lc::load(y, act, i) + lc::load(x, act, i));
  return LC_OK;
}

extern "C" lc_status lc_gather_rows(lc_ctx *ctx, lc_dtype act, const void *x, int64_t width, const int32_t *rows,
                                    int64_t n_rows, int64_t x_rows, void *out) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, x && rows && out && width > 0 && n_rows >= 0, "lc_gather_rows: bad argument");
  const int64_t bytes = width * lc::dtype_bytes(act);
  for (int64_t r = 0; r < n_rows; ++r) {
    LC_REQUIRE(ctx, rows[r] >= 0 && rows[r] < x_rows, "lc_gather_rows: row %d outside [0, %lld)", rows[r],
               (long long)x_rows);
    std::memcpy(static_cast<char *>(out) + r * bytes, static_cast<const char *>(x) + rows[r] * bytes, size_t(bytes));
  }
  return LC_OK;
}
