// The two-op form of lc_linear_silu_mul and lc_linear_rope_store, through the ABI itself: the CPU
// twin's whole implementation, and the CUDA backend's wherever one fused kernel does not apply.
#pragma once
#include "loracuda.h"

inline lc_status lc_linear_then_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                         int64_t m, int64_t inter, int64_t k, void *gate_up, void *out) {
  const lc_status st = lc_linear(ctx, act, x, wt, w, m, 2 * inter, k, 0, gate_up);
  return st != LC_OK ? st : lc_silu_mul(ctx, act, gate_up, m, inter, out);
}

inline lc_status lc_linear_then_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                                           int64_t m, int64_t k, void *qkv, const int32_t *positions,
                                           const int32_t *slot_mapping, int32_t n_heads, int32_t n_kv_heads,
                                           int32_t head_dim, const float *inv_freq, float attention_scaling,
                                           void *q_out, lc_dtype cache_dt, void *k_cache, void *v_cache,
                                           int64_t cache_slots) {
  const lc_status st = lc_linear(ctx, act, x, wt, w, m, (n_heads + 2 * int64_t(n_kv_heads)) * head_dim, k, 0, qkv);
  return st != LC_OK ? st
                     : lc_rope_store(ctx, act, qkv, positions, slot_mapping, m, n_heads, n_kv_heads, head_dim, inv_freq,
                                     attention_scaling, q_out, cache_dt, k_cache, v_cache, cache_slots);
}
