// Skinny GEMM (decode: a few rows of x) as a bandwidth-bound kernel; see gemv.cu.
#pragma once
#include "common.cuh"

namespace lc {
/** Largest m the skinny kernel takes. */
constexpr int64_t GEMV_MAX_M = 8;
/** Whether y = x @ W^T with these operands can take the skinny kernel (half types, 16-byte rows). */
bool gemv_fits(lc_dtype act, lc_dtype wt, const void *x, const void *w, const void *y, int64_t m, int64_t k);
/** Enqueues it; the caller checked gemv_fits. */
void gemv(lc_ctx *ctx, lc_dtype dt, const void *x, const void *w, int64_t m, int64_t n, int64_t k, int accumulate, void *y);
}  // namespace lc
