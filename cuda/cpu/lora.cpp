// Segmented LoRA (SGMV): shrink x @ A^T into a rank-wide fp32 buffer, expand it through B^T into y.
#include "common.h"

static lc_status check_segments(lc_ctx *ctx, const char *op, const int32_t *seg_indptr, const int32_t *seg_slot,
                                int32_t n_segs, int64_t n_tokens, const int32_t *ranks, int32_t n_slots,
                                int32_t max_rank) {
  LC_REQUIRE(ctx, seg_indptr && seg_slot && ranks && n_segs >= 0 && n_slots >= 0 && max_rank >= 0,
             "%s: bad segment arguments", op);
  LC_REQUIRE(ctx, seg_indptr[0] >= 0 && seg_indptr[n_segs] <= n_tokens, "%s: segments exceed %lld tokens", op,
             (long long)n_tokens);
  for (int32_t g = 0; g < n_segs; ++g) {
    LC_REQUIRE(ctx, seg_indptr[g] <= seg_indptr[g + 1], "%s: segment %d has negative length", op, g);
    LC_REQUIRE(ctx, seg_slot[g] < n_slots, "%s: segment %d uses slot %d of %d", op, g, seg_slot[g], n_slots);
    if (seg_slot[g] >= 0)
      LC_REQUIRE(ctx, ranks[seg_slot[g]] >= 0 && ranks[seg_slot[g]] <= max_rank, "%s: slot %d has rank %d > %d", op,
                 seg_slot[g], ranks[seg_slot[g]], max_rank);
  }
  return LC_OK;
}

extern "C" lc_status lc_lora_shrink(lc_ctx *ctx, lc_dtype act, const void *x, int64_t in_dim, lc_dtype wt,
                                    const void *const *a_ptrs, const int32_t *ranks, int32_t n_slots,
                                    const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs,
                                    int64_t n_tokens, int32_t max_rank, float *tmp) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && a_ptrs && tmp && in_dim > 0, "lc_lora_shrink: bad argument");
  lc_status st = check_segments(ctx, "lc_lora_shrink", seg_indptr, seg_slot, n_segs, n_tokens, ranks, n_slots, max_rank);
  if (st != LC_OK) return st;
  std::vector<float> xs(in_dim), arow(in_dim);
  for (int32_t g = 0; g < n_segs; ++g) {
    const int32_t s = seg_slot[g];
    if (s < 0 || ranks[s] == 0) continue;
    LC_REQUIRE(ctx, a_ptrs[s], "lc_lora_shrink: slot %d has no A matrix", s);
    for (int32_t j = 0; j < ranks[s]; ++j) {
      lc::load_row(a_ptrs[s], wt, j * in_dim, in_dim, arow.data());
      for (int64_t t = seg_indptr[g]; t < seg_indptr[g + 1]; ++t) {
        lc::load_row(x, act, t * in_dim, in_dim, xs.data());
        tmp[t * max_rank + j] = lc::dot(xs.data(), arow.data(), in_dim);
      }
    }
  }
  return LC_OK;
}

extern "C" lc_status lc_lora_expand(lc_ctx *ctx, lc_dtype act, const float *tmp, int32_t max_rank, lc_dtype wt,
                                    const void *const *b_ptrs, const int32_t *ranks, const float *scales,
                                    const float *const *dora_mag, int32_t n_slots, const int32_t *seg_indptr,
                                    const int32_t *seg_slot, int32_t n_segs, int64_t n_tokens, int64_t out_dim,
                                    void *y) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, tmp && b_ptrs && scales && y && out_dim > 0, "lc_lora_expand: bad argument");
  lc_status st = check_segments(ctx, "lc_lora_expand", seg_indptr, seg_slot, n_segs, n_tokens, ranks, n_slots, max_rank);
  if (st != LC_OK) return st;
  std::vector<float> brow(max_rank > 0 ? max_rank : 1);
  for (int32_t g = 0; g < n_segs; ++g) {
    const int32_t s = seg_slot[g];
    if (s < 0 || ranks[s] == 0) continue;
    const int32_t r = ranks[s];
    LC_REQUIRE(ctx, b_ptrs[s], "lc_lora_expand: slot %d has no B matrix", s);
    const float *mag = dora_mag ? dora_mag[s] : nullptr;
    for (int64_t o = 0; o < out_dim; ++o) {
      lc::load_row(b_ptrs[s], wt, o * r, r, brow.data());
      for (int64_t t = seg_indptr[g]; t < seg_indptr[g + 1]; ++t) {
        const float delta = scales[s] * lc::dot(tmp + t * max_rank, brow.data(), r);
        const float base = lc::load(y, act, t * out_dim + o);
        lc::store(y, act, t * out_dim + o, mag ? mag[o] * (base + delta) : base + delta);
      }
    }
  }
  return LC_OK;
}
