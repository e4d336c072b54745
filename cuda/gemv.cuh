// One-row projections (decode at batch 1) without cuBLAS, alone or with the op that follows: see gemv.cu.
#pragma once
#include "common.cuh"

namespace lc {

// Whether the linear_gemv* ops take y[1, n] = x[1, k] W[n, k]^T: equal 2-byte dtypes, whole 16-byte vectors.
bool gemv_fits(lc_dtype act, lc_dtype wt, int64_t m, int64_t k, const void *x, const void *w);

// y = (accumulate ? y : 0) + x . W^T for one row; launches on ctx->stream.
lc_status linear_gemv(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t n, int64_t k,
                      int32_t accumulate, void *y);

// lc_linear_silu_mul for one row (W [2 inter, k]): out[inter], no gate_up written.
lc_status linear_gemv_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t inter, int64_t k,
                               void *out);

// lc_linear_rope_store for one row: q_out and the token's cache slot, no qkv written.
lc_status linear_gemv_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t k,
                                 const int32_t *positions, const int32_t *slot_mapping, int32_t n_heads,
                                 int32_t n_kv_heads, int32_t head_dim, const float *inv_freq, float scaling,
                                 void *q_out, lc_dtype cache_dt, void *k_cache, void *v_cache, int64_t cache_slots);

}  // namespace lc
