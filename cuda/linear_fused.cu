// lc_linear with the op after it, or with the norm before it (see loracuda.h): one kernel for a one-row
// projection (gemv.cu), else the ops one after the other (linear_then.h).
#include "gemv.cuh"
#include "linear_then.h"

namespace {

lc_status silu_mul_checks(lc_ctx *ctx, const char *op, lc_dtype act, lc_dtype wt, const void *x, const void *w,
                          int64_t m, int64_t inter, int64_t k, const void *gate_up, const void *out) {
  LC_REQUIRE(ctx, lc::valid_dtype(act) && lc::valid_dtype(wt), "%s: unknown dtype", op);
  LC_REQUIRE(ctx, x && w && gate_up && out, "%s: NULL pointer", op);
  LC_REQUIRE(ctx, m >= 0 && inter > 0 && k > 0 && 2 * inter <= INT32_MAX && k <= INT32_MAX,
             "%s: bad shape m=%lld inter=%lld k=%lld", op, (long long)m, (long long)inter, (long long)k);
  return LC_OK;
}

lc_status rope_store_checks(lc_ctx *ctx, const char *op, lc_dtype act, lc_dtype wt, lc_dtype cache_dt, const void *x,
                            const void *w, int64_t m, int64_t k, const void *qkv, const int32_t *positions,
                            const int32_t *slot_mapping, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                            const float *inv_freq, const void *q_out, const void *k_cache, const void *v_cache) {
  LC_REQUIRE(ctx, lc::valid_dtype(act) && lc::valid_dtype(wt) && lc::valid_dtype(cache_dt), "%s: unknown dtype", op);
  LC_REQUIRE(ctx, x && w && qkv && positions && slot_mapping && inv_freq && q_out && k_cache && v_cache,
             "%s: NULL pointer", op);
  LC_REQUIRE(ctx, m >= 0 && k > 0 && k <= INT32_MAX && n_heads > 0 && n_kv_heads > 0 && head_dim > 0 &&
                      head_dim % 2 == 0 && head_dim <= 8192 && (n_heads + 2 * int64_t(n_kv_heads)) * head_dim <= INT32_MAX,
             "%s: bad shape", op);
  return LC_OK;
}

// The norm of lc_rmsnorm_linear_*: its own arguments, and whether the one-row kernel can apply it.
lc_status norm_checks(lc_ctx *ctx, const char *op, lc_dtype norm_wt, const void *x, const void *norm_w, const void *xn,
                      int64_t m) {
  LC_REQUIRE(ctx, lc::valid_dtype(norm_wt), "%s: unknown dtype %d", op, int(norm_wt));
  LC_REQUIRE(ctx, norm_w && xn, "%s: NULL pointer", op);
  LC_REQUIRE(ctx, xn != x, "%s: xn must not alias x", op);
  LC_REQUIRE(ctx, m <= INT32_MAX, "%s: bad shape", op);
  return LC_OK;
}

}  // namespace

extern "C" lc_status lc_linear_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                        int64_t m, int64_t inter, int64_t k, void *gate_up, void *out) {
  LC_BEGIN(ctx);
  if (lc_status st = silu_mul_checks(ctx, __func__, act, wt, x, w, m, inter, k, gate_up, out)) return st;
  if (m == 0) return LC_OK;
  if (ctx->fuse_gemv && lc::gemv_fits(act, wt, m, k, x, w))
    return lc::linear_gemv_silu_mul(ctx, act, x, nullptr, w, inter, k, out);
  return lc_linear_then_silu_mul(ctx, act, x, wt, w, m, inter, k, gate_up, out);
}

extern "C" lc_status lc_linear_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                          int64_t m, int64_t k, void *qkv, const int32_t *positions,
                                          const int32_t *slot_mapping, int32_t n_heads, int32_t n_kv_heads,
                                          int32_t head_dim, const float *inv_freq, float attention_scaling,
                                          void *q_out, lc_dtype cache_dt, void *k_cache, void *v_cache,
                                          int64_t cache_slots) {
  LC_BEGIN(ctx);
  if (lc_status st = rope_store_checks(ctx, __func__, act, wt, cache_dt, x, w, m, k, qkv, positions, slot_mapping,
                                       n_heads, n_kv_heads, head_dim, inv_freq, q_out, k_cache, v_cache))
    return st;
  if (m == 0) return LC_OK;
  if (ctx->fuse_gemv && lc::gemv_fits(act, wt, m, k, x, w))
    return lc::linear_gemv_rope_store(ctx, act, x, nullptr, w, k, positions, slot_mapping, n_heads, n_kv_heads,
                                      head_dim, inv_freq, attention_scaling, q_out, cache_dt, k_cache, v_cache,
                                      cache_slots);
  return lc_linear_then_rope_store(ctx, act, x, wt, w, m, k, qkv, positions, slot_mapping, n_heads, n_kv_heads,
                                   head_dim, inv_freq, attention_scaling, q_out, cache_dt, k_cache, v_cache, cache_slots);
}

extern "C" lc_status lc_linear_residual(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                        int64_t m, int64_t n, int64_t k, void *y, void *residual) {
  LC_BEGIN(ctx);
  LC_REQUIRE(ctx, lc::valid_dtype(act) && lc::valid_dtype(wt), "lc_linear_residual: unknown dtype");
  LC_REQUIRE(ctx, x && w && y && residual, "lc_linear_residual: NULL pointer");
  LC_REQUIRE(ctx, m >= 0 && n > 0 && k > 0 && n <= INT32_MAX && k <= INT32_MAX,
             "lc_linear_residual: bad shape m=%lld n=%lld k=%lld", (long long)m, (long long)n, (long long)k);
  if (m == 0) return LC_OK;
  if (ctx->fuse_gemv && lc::gemv_fits(act, wt, m, k, x, w)) return lc::linear_gemv_residual(ctx, act, x, w, n, k, y, residual);
  return lc_linear_then_residual(ctx, act, x, wt, w, m, n, k, y, residual);
}

extern "C" lc_status lc_rmsnorm_linear_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype norm_wt,
                                                const void *norm_w, float eps, void *xn, lc_dtype wt, const void *w,
                                                int64_t m, int64_t inter, int64_t k, void *gate_up, void *out) {
  LC_BEGIN(ctx);
  if (lc_status st = norm_checks(ctx, __func__, norm_wt, x, norm_w, xn, m)) return st;
  if (lc_status st = silu_mul_checks(ctx, __func__, act, wt, x, w, m, inter, k, gate_up, out)) return st;
  if (m == 0) return LC_OK;
  if (ctx->fuse_gemv && lc::gemv_fits(act, wt, m, k, x, w) && lc::gemv_norm_fits(act, norm_wt, k, norm_w, xn)) {
    const lc::GemvNorm norm{norm_w, eps, xn};
    return lc::linear_gemv_silu_mul(ctx, act, x, &norm, w, inter, k, out);
  }
  return lc_rmsnorm_then_linear_silu_mul(ctx, act, x, norm_wt, norm_w, eps, xn, wt, w, m, inter, k, gate_up, out);
}

extern "C" lc_status lc_rmsnorm_linear_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype norm_wt,
                                                  const void *norm_w, float eps, void *xn, lc_dtype wt, const void *w,
                                                  int64_t m, int64_t k, void *qkv, const int32_t *positions,
                                                  const int32_t *slot_mapping, int32_t n_heads, int32_t n_kv_heads,
                                                  int32_t head_dim, const float *inv_freq, float attention_scaling,
                                                  void *q_out, lc_dtype cache_dt, void *k_cache, void *v_cache,
                                                  int64_t cache_slots) {
  LC_BEGIN(ctx);
  if (lc_status st = norm_checks(ctx, __func__, norm_wt, x, norm_w, xn, m)) return st;
  if (lc_status st = rope_store_checks(ctx, __func__, act, wt, cache_dt, x, w, m, k, qkv, positions, slot_mapping,
                                       n_heads, n_kv_heads, head_dim, inv_freq, q_out, k_cache, v_cache))
    return st;
  if (m == 0) return LC_OK;
  if (ctx->fuse_gemv && lc::gemv_fits(act, wt, m, k, x, w) && lc::gemv_norm_fits(act, norm_wt, k, norm_w, xn)) {
    const lc::GemvNorm norm{norm_w, eps, xn};
    return lc::linear_gemv_rope_store(ctx, act, x, &norm, w, k, positions, slot_mapping, n_heads, n_kv_heads, head_dim,
                                      inv_freq, attention_scaling, q_out, cache_dt, k_cache, v_cache, cache_slots);
  }
  return lc_rmsnorm_then_linear_rope_store(ctx, act, x, norm_wt, norm_w, eps, xn, wt, w, m, k, qkv, positions,
                                           slot_mapping, n_heads, n_kv_heads, head_dim, inv_freq, attention_scaling,
                                           q_out, cache_dt, k_cache, v_cache, cache_slots);
}
