// lc_linear with the op after it (see loracuda.h): one kernel for a one-row projection (gemv.cu), else
// the two ops one after the other.
#include "gemv.cuh"
#include "linear_then.h"

extern "C" lc_status lc_linear_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                        int64_t m, int64_t inter, int64_t k, void *gate_up, void *out) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && w && gate_up && out, "lc_linear_silu_mul: NULL pointer");
  LC_REQUIRE(ctx, m >= 0 && inter > 0 && k > 0 && 2 * inter <= INT32_MAX && k <= INT32_MAX,
             "lc_linear_silu_mul: bad shape m=%lld inter=%lld k=%lld", (long long)m, (long long)inter, (long long)k);
  if (m == 0) return LC_OK;
  if (ctx->fuse_gemv && lc::gemv_fits(act, wt, m, k, x, w)) return lc::linear_gemv_silu_mul(ctx, act, x, w, inter, k, out);
  return lc_linear_then_silu_mul(ctx, act, x, wt, w, m, inter, k, gate_up, out);
}

extern "C" lc_status lc_linear_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                          int64_t m, int64_t k, void *qkv, const int32_t *positions,
                                          const int32_t *slot_mapping, int32_t n_heads, int32_t n_kv_heads,
                                          int32_t head_dim, const float *inv_freq, float attention_scaling,
                                          void *q_out, lc_dtype cache_dt, void *k_cache, void *v_cache,
                                          int64_t cache_slots) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE_DTYPE(ctx, cache_dt);
  LC_REQUIRE(ctx, x && w && qkv && positions && slot_mapping && inv_freq && q_out && k_cache && v_cache,
             "lc_linear_rope_store: NULL pointer");
  LC_REQUIRE(ctx, m >= 0 && k > 0 && k <= INT32_MAX && n_heads > 0 && n_kv_heads > 0 && head_dim > 0 &&
                      head_dim % 2 == 0 && head_dim <= 8192 && (n_heads + 2 * int64_t(n_kv_heads)) * head_dim <= INT32_MAX,
             "lc_linear_rope_store: bad shape");
  if (m == 0) return LC_OK;
  if (ctx->fuse_gemv && lc::gemv_fits(act, wt, m, k, x, w))
    return lc::linear_gemv_rope_store(ctx, act, x, w, k, positions, slot_mapping, n_heads, n_kv_heads, head_dim,
                                      inv_freq, attention_scaling, q_out, cache_dt, k_cache, v_cache, cache_slots);
  return lc_linear_then_rope_store(ctx, act, x, wt, w, m, k, qkv, positions, slot_mapping, n_heads, n_kv_heads,
                                   head_dim, inv_freq, attention_scaling, q_out, cache_dt, k_cache, v_cache, cache_slots);
}
