// lc_linear with the op after it (see loracuda.h): the reference runs the two ops and keeps the intermediate.
#include "common.h"
#include "../linear_then.h"

extern "C" lc_status lc_linear_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                        int64_t m, int64_t inter, int64_t k, void *gate_up, void *out) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, inter > 0, "lc_linear_silu_mul: bad shape inter=%lld", (long long)inter);
  return lc_linear_then_silu_mul(ctx, act, x, wt, w, m, inter, k, gate_up, out);
}

extern "C" lc_status lc_linear_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                          int64_t m, int64_t k, void *qkv, const int32_t *positions,
                                          const int32_t *slot_mapping, int32_t n_heads, int32_t n_kv_heads,
                                          int32_t head_dim, const float *inv_freq, float attention_scaling,
                                          void *q_out, lc_dtype cache_dt, void *k_cache, void *v_cache,
                                          int64_t cache_slots) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, n_heads > 0 && n_kv_heads > 0 && head_dim > 0, "lc_linear_rope_store: bad shape");
  return lc_linear_then_rope_store(ctx, act, x, wt, w, m, k, qkv, positions, slot_mapping, n_heads, n_kv_heads,
                                   head_dim, inv_freq, attention_scaling, q_out, cache_dt, k_cache, v_cache, cache_slots);
}
