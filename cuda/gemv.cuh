// One-row projections (decode at batch 1) without cuBLAS: see gemv.cu.
#pragma once
#include "common.cuh"

namespace lc {

// Whether linear_gemv takes y[1, n] = x[1, k] W[n, k]^T: equal 2-byte dtypes, whole 16-byte vectors.
bool gemv_fits(lc_dtype act, lc_dtype wt, int64_t m, int64_t k, const void *x, const void *w);

// y = (accumulate ? y : 0) + x . W^T for one row; launches on ctx->stream.
lc_status linear_gemv(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t n, int64_t k,
                      int32_t accumulate, void *y);

}  // namespace lc
