// lc_linear with the op after it (see loracuda.h): the reference runs the two ops and keeps the intermediate.
#include "common.h"

extern "C" lc_status lc_linear_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                        int64_t m, int64_t inter, int64_t k, void *gate_up, void *out) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, inter > 0, "lc_linear_silu_mul: bad shape inter=%lld", (long long)inter);
  const lc_status st = lc_linear(ctx, act, x, wt, w, m, 2 * inter, k, 0, gate_up);
  return st != LC_OK ? st : lc_silu_mul(ctx, act, gate_up, m, inter, out);
}

extern "C" lc_status lc_linear_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                          int64_t m, int64_t k, void *qkv, const int32_t *positions,
                                          const int32_t *slot_mapping, int32_t n_heads, int32_t n_kv_heads,
                                          int32_t head_dim, const float *inv_freq, float attention_scaling,
                                          void *q_out, lc_dtype cache_dt, void *k_cache, void *v_cache,
                                          int64_t cache_slots) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, n_heads > 0 && n_kv_heads > 0 && head_dim > 0, "lc_linear_rope_store: bad shape");
  const lc_status st = lc_linear(ctx, act, x, wt, w, m, (n_heads + 2 * int64_t(n_kv_heads)) * head_dim, k, 0, qkv);
  return st != LC_OK ? st
                     : lc_rope_store(ctx, act, qkv, positions, slot_mapping, m, n_heads, n_kv_heads, head_dim, inv_freq,
                                     attention_scaling, q_out, cache_dt, k_cache, v_cache, cache_slots);
}
