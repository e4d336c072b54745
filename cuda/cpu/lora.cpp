// Segmented LoRA (SGMV): shrink x @ A^T into a rank-wide fp32 buffer, expand it through B^T into y,
// for up to LC_LORA_MAX_MODULES projections sharing one input.
#include "common.h"

static lc_status check_segments(lc_ctx *ctx, const char *op, const lc_lora_module *mods, int32_t n_mods,
                                const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs, int64_t n_tokens,
                                int32_t n_slots, int32_t max_rank) {
  LC_REQUIRE(ctx, mods && n_mods >= 1 && n_mods <= LC_LORA_MAX_MODULES, "%s: %d modules (1 to %d)", op, n_mods,
             LC_LORA_MAX_MODULES);
  LC_REQUIRE(ctx, seg_indptr && seg_slot && n_segs >= 0 && n_slots >= 0 && max_rank >= 0, "%s: bad segment arguments",
             op);
  for (int32_t m = 0; m < n_mods; ++m) LC_REQUIRE(ctx, mods[m].ranks, "%s: module %d has no ranks", op, m);
  LC_REQUIRE(ctx, seg_indptr[0] >= 0 && seg_indptr[n_segs] <= n_tokens, "%s: segments exceed %lld tokens", op,
             (long long)n_tokens);
  for (int32_t g = 0; g < n_segs; ++g) {
    const int32_t s = seg_slot[g];
    LC_REQUIRE(ctx, seg_indptr[g] <= seg_indptr[g + 1], "%s: segment %d has negative length", op, g);
    LC_REQUIRE(ctx, s < n_slots, "%s: segment %d uses slot %d of %d", op, g, s, n_slots);
    if (s < 0) continue;
    for (int32_t m = 0; m < n_mods; ++m)
      LC_REQUIRE(ctx, mods[m].ranks[s] >= 0 && mods[m].ranks[s] <= max_rank, "%s: module %d slot %d has rank %d > %d",
                 op, m, s, mods[m].ranks[s], max_rank);
  }
  return LC_OK;
}

extern "C" lc_status lc_lora_shrink(lc_ctx *ctx, lc_dtype act, const void *x, int64_t in_dim, lc_dtype wt,
                                    const lc_lora_module *mods, int32_t n_mods, int32_t n_slots,
                                    const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs,
                                    int64_t n_tokens, int32_t max_rank, float *tmp) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && tmp && in_dim > 0, "lc_lora_shrink: bad argument");
  lc_status st = check_segments(ctx, "lc_lora_shrink", mods, n_mods, seg_indptr, seg_slot, n_segs, n_tokens, n_slots,
                                max_rank);
  if (st != LC_OK) return st;
  const int64_t width = int64_t(n_mods) * max_rank;
  std::vector<float> xs(in_dim), arow(in_dim);
  for (int32_t m = 0; m < n_mods; ++m) {
    LC_REQUIRE(ctx, mods[m].a_ptrs, "lc_lora_shrink: module %d has no A table", m);
    for (int32_t g = 0; g < n_segs; ++g) {
      const int32_t s = seg_slot[g];
      if (s < 0 || mods[m].ranks[s] == 0) continue;
      const void *a = mods[m].a_ptrs[s];
      LC_REQUIRE(ctx, a, "lc_lora_shrink: module %d slot %d has no A matrix", m, s);
      for (int32_t j = 0; j < mods[m].ranks[s]; ++j) {
        lc::load_row(a, wt, j * in_dim, in_dim, arow.data());
        for (int64_t t = seg_indptr[g]; t < seg_indptr[g + 1]; ++t) {
          lc::load_row(x, act, t * in_dim, in_dim, xs.data());
          tmp[t * width + m * max_rank + j] = lc::dot(xs.data(), arow.data(), in_dim);
        }
      }
    }
  }
  return LC_OK;
}

extern "C" lc_status lc_lora_expand(lc_ctx *ctx, lc_dtype act, const float *tmp, int32_t max_rank, lc_dtype wt,
                                    const lc_lora_module *mods, int32_t n_mods, int32_t n_slots,
                                    const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs,
                                    int64_t n_tokens, int64_t y_width, void *y) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, tmp && y && y_width > 0, "lc_lora_expand: bad argument");
  lc_status st = check_segments(ctx, "lc_lora_expand", mods, n_mods, seg_indptr, seg_slot, n_segs, n_tokens, n_slots,
                                max_rank);
  if (st != LC_OK) return st;
  const int64_t width = int64_t(n_mods) * max_rank;
  std::vector<float> brow(max_rank > 0 ? max_rank : 1);
  for (int32_t m = 0; m < n_mods; ++m) {
    const lc_lora_module &mod = mods[m];
    LC_REQUIRE(ctx, mod.b_ptrs && mod.scales && mod.out_dim > 0 && mod.out_offset >= 0 &&
                        mod.out_offset + mod.out_dim <= y_width,
               "lc_lora_expand: module %d: bad tables or columns [%lld, +%lld) of %lld", m, (long long)mod.out_offset,
               (long long)mod.out_dim, (long long)y_width);
    for (int32_t g = 0; g < n_segs; ++g) {
      const int32_t s = seg_slot[g];
      if (s < 0 || mod.ranks[s] == 0) continue;
      const int32_t r = mod.ranks[s];
      LC_REQUIRE(ctx, mod.b_ptrs[s], "lc_lora_expand: module %d slot %d has no B matrix", m, s);
      const float *mag = mod.dora_mag ? mod.dora_mag[s] : nullptr;
      for (int64_t o = 0; o < mod.out_dim; ++o) {
        lc::load_row(mod.b_ptrs[s], wt, o * r, r, brow.data());
        for (int64_t t = seg_indptr[g]; t < seg_indptr[g + 1]; ++t) {
          const float delta = mod.scales[s] * lc::dot(tmp + t * width + m * max_rank, brow.data(), r);
          const int64_t at = t * y_width + mod.out_offset + o;
          const float base = lc::load(y, act, at);
          lc::store(y, act, at, mag ? mag[o] * (base + delta) : base + delta);
        }
      }
    }
  }
  return LC_OK;
}
