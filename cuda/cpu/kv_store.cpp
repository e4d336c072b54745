#include "common.h"

extern "C" lc_status lc_kv_store(lc_ctx *ctx, lc_dtype act, const void *k, const void *v, const int32_t *slot_mapping,
                                 int64_t n_tokens, int32_t n_kv_heads, int32_t head_dim, lc_dtype cache_dt,
                                 void *k_cache, void *v_cache, int64_t cache_slots) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, cache_dt);
  LC_REQUIRE(ctx, k && v && slot_mapping && k_cache && v_cache, "lc_kv_store: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && n_kv_heads > 0 && head_dim > 0, "lc_kv_store: bad shape");
  const int64_t width = int64_t(n_kv_heads) * head_dim;
  std::vector<float> row(width);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;  // padding token
    LC_REQUIRE(ctx, slot < cache_slots, "lc_kv_store: slot %lld outside the cache (%lld slots)", (long long)slot,
               (long long)cache_slots);
    lc::load_row(k, act, t * width, width, row.data());
    lc::store_row(k_cache, cache_dt, slot * width, width, row.data());
    lc::load_row(v, act, t * width, width, row.data());
    lc::store_row(v_cache, cache_dt, slot * width, width, row.data());
  }
  return LC_OK;
}
