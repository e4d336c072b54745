#include "common.h"

extern "C" lc_status lc_embed(lc_ctx *ctx, lc_dtype wt, const void *table, int64_t vocab, int64_t hidden,
                              const int32_t *ids, int64_t n_tokens, lc_dtype act, void *out) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, table && ids && out, "lc_embed: NULL pointer");
  LC_REQUIRE(ctx, vocab > 0 && hidden > 0 && n_tokens >= 0, "lc_embed: bad shape");
  std::vector<float> row(hidden);
  for (int64_t t = 0; t < n_tokens; ++t) {
    LC_REQUIRE(ctx, ids[t] >= 0 && ids[t] < vocab, "lc_embed: token id %d outside the vocabulary [0, %lld)", ids[t],
               (long long)vocab);
    lc::load_row(table, wt, int64_t(ids[t]) * hidden, hidden, row.data());
    lc::store_row(out, act, t * hidden, hidden, row.data());
  }
  return LC_OK;
}
