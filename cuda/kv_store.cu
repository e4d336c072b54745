// Paged KV write.
#include "common.cuh"

// For t with slot_mapping[t] >= 0: k_cache[slot][h][d] = k[t][h][d]; v_cache likewise.
// (slot >= cache_slots: skipped, device error reported)
template <typename A, typename C>
__global__ void kv_store_kernel(const A *k, const A *v, const int32_t *slot_mapping, int64_t width, C *k_cache,
                                C *v_cache, int64_t cache_slots, int *err) {
  const int64_t t = blockIdx.x, slot = slot_mapping[t];
  if (slot < 0) return;  // padding token
  if (slot >= cache_slots) {
    if (threadIdx.x == 0) lc::report(err, LC_DEV_KV_SLOT);
    return;
  }
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    k_cache[slot * width + i] = lc::from_f<C>(lc::to_f(k[t * width + i]));
    v_cache[slot * width + i] = lc::from_f<C>(lc::to_f(v[t * width + i]));
  }
}

extern "C" lc_status lc_kv_store(lc_ctx *ctx, lc_dtype act, const void *k, const void *v, const int32_t *slot_mapping,
                                 int64_t n_tokens, int32_t n_kv_heads, int32_t head_dim, lc_dtype cache_dt,
                                 void *k_cache, void *v_cache, int64_t cache_slots) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, cache_dt);
  LC_REQUIRE(ctx, k && v && slot_mapping && k_cache && v_cache, "lc_kv_store: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && n_tokens <= INT32_MAX && n_kv_heads > 0 && head_dim > 0, "lc_kv_store: bad shape");
  if (n_tokens == 0) return LC_OK;
  const int64_t width = int64_t(n_kv_heads) * head_dim;
  lc_dispatch(act, [&](auto a) {
    lc_dispatch(cache_dt, [&](auto c) {
      using A = decltype(a);
      using C = decltype(c);
      kv_store_kernel<A, C><<<unsigned(n_tokens), 256, 0, ctx->stream>>>(
          static_cast<const A *>(k), static_cast<const A *>(v), slot_mapping, width, static_cast<C *>(k_cache),
          static_cast<C *>(v_cache), cache_slots, ctx->dev_error);
    });
  });
  return lc::launched(ctx, "lc_kv_store");
}
