// Token embedding lookup.
#include "common.cuh"

// out[t, :] = table[ids[t], :]   (an id outside [0, vocab) gives a zero row and a device error)
template <typename W, typename A>
__global__ void embed_kernel(const W *table, int64_t vocab, int64_t hidden, const int32_t *ids, A *out, int *err) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  const bool ok = id >= 0 && id < vocab;
  if (!ok && threadIdx.x == 0) lc::report(err, LC_DEV_EMBED_ID);
  const W *row = table + (ok ? int64_t(id) : 0) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x)
    out[t * hidden + i] = lc::from_f<A>(ok ? lc::to_f(row[i]) : 0.0f);
}

extern "C" lc_status lc_embed(lc_ctx *ctx, lc_dtype wt, const void *table, int64_t vocab, int64_t hidden,
                              const int32_t *ids, int64_t n_tokens, lc_dtype act, void *out) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, table && ids && out, "lc_embed: NULL pointer");
  LC_REQUIRE(ctx, vocab > 0 && hidden > 0 && n_tokens >= 0 && n_tokens <= INT32_MAX, "lc_embed: bad shape");
  if (n_tokens == 0) return LC_OK;
  lc_dispatch(wt, [&](auto w) {
    lc_dispatch(act, [&](auto a) {
      using W = decltype(w);
      using A = decltype(a);
      embed_kernel<W, A><<<unsigned(n_tokens), 256, 0, ctx->stream>>>(
          static_cast<const W *>(table), vocab, hidden, ids, static_cast<A *>(out), ctx->dev_error);
    });
  });
  return lc::launched(ctx, "lc_embed");
}
