// One-row projections (decode at batch 1) without cuBLAS, alone or with the op that follows: see gemv.cu.
#pragma once
#include "common.cuh"

namespace lc {

// Whether the linear_gemv* ops take y[1, n] = x[1, k] W[n, k]^T: equal 2-byte dtypes, whole 16-byte vectors.
bool gemv_fits(lc_dtype act, lc_dtype wt, int64_t m, int64_t k, const void *x, const void *w);

// The RMSNorm a one-row projection may apply to x first: x * rsqrt(mean(x^2) + eps) * w, also stored to xn.
struct GemvNorm {
  const void *w;
  float eps;
  void *xn;
};
// Whether linear_gemv_* take a GemvNorm: w of dtype act, k * 2 bytes of shared memory at most 48 KB, 16-byte aligned.
bool gemv_norm_fits(lc_dtype act, lc_dtype norm_wt, int64_t k, const void *norm_w, const void *xn);

// y = (accumulate ? y : 0) + x . W^T for one row; launches on ctx->stream.
lc_status linear_gemv(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t n, int64_t k,
                      int32_t accumulate, void *y);

// lc_linear_residual for one row: y = x . W^T, residual += y.
lc_status linear_gemv_residual(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t n, int64_t k, void *y,
                               void *residual);

// lc_linear_silu_mul for one row (W [2 inter, k]): out[inter], no gate_up written; x normalised first where
// norm is not NULL (lc_rmsnorm_linear_silu_mul).
lc_status linear_gemv_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, const GemvNorm *norm, const void *w,
                               int64_t inter, int64_t k, void *out);

// lc_linear_rope_store for one row: q_out and the token's cache slot, no qkv written; x normalised first
// where norm is not NULL (lc_rmsnorm_linear_rope_store).
lc_status linear_gemv_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, const GemvNorm *norm, const void *w, int64_t k,
                                 const int32_t *positions, const int32_t *slot_mapping, int32_t n_heads,
                                 int32_t n_kv_heads, int32_t head_dim, const float *inv_freq, float scaling,
                                 void *q_out, lc_dtype cache_dt, void *k_cache, void *v_cache, int64_t cache_slots);

}  // namespace lc
