// Logit rules (grammar mask, logit_bias, penalties) in place, one block per row, and output-token
// counting (see loracuda.h; the per-element arithmetic is logit_rules.h, shared with the twin).
#include "common.cuh"
#include "logit_rules.h"

namespace {

constexpr int THREADS = 256;

template <typename A> __global__ void __launch_bounds__(THREADS) logit_rules_kernel(A *logits, int vocab, lc_logit_rules r, int *err) {
  const int row = blockIdx.x;
  int mask = r.mask_row ? r.mask_row[row] : -1, counts = r.count_row ? r.count_row[row] : -1;
  const int b0 = r.bias_indptr ? r.bias_indptr[row] : 0;
  int nb = r.bias_indptr ? r.bias_indptr[row + 1] - b0 : 0;
  if (mask >= r.n_mask_rows || counts >= r.n_count_rows || nb < 0) {
    if (threadIdx.x == 0) lc::report(err, LC_DEV_LOGIT_RULE);
    if (mask >= r.n_mask_rows) mask = -1;
    if (counts >= r.n_count_rows) counts = -1;
    if (nb < 0) nb = 0;
  }
  if (mask < 0 && counts < 0 && nb == 0) return;
  if (threadIdx.x == 0)
    for (int j = 0; j < nb; ++j) {
      const int id = r.bias_ids[b0 + j];
      if (id < 0 || id >= vocab || (j > 0 && id <= r.bias_ids[b0 + j - 1])) lc::report(err, LC_DEV_LOGIT_RULE);
    }
  A *x = logits + int64_t(row) * vocab;
  const uint32_t *allowed = mask >= 0 ? r.allowed + int64_t(mask) * ((vocab + 31) / 32) : nullptr;
  const int32_t *out = counts >= 0 ? r.output_counts + int64_t(counts) * vocab : nullptr;
  const int32_t *prompt = counts >= 0 ? r.prompt_counts + int64_t(counts) * vocab : nullptr;
  const float presence = counts >= 0 ? r.presence[row] : 0.0f, frequency = counts >= 0 ? r.frequency[row] : 0.0f;
  const float repetition = counts >= 0 ? r.repetition[row] : 1.0f;
  for (int v = threadIdx.x; v < vocab; v += THREADS) {
    if (allowed && !lc::token_allowed(allowed, v)) {
      x[v] = lc::from_f<A>(-INFINITY);
      continue;
    }
    const float bias = nb ? lc::bias_for(r.bias_ids + b0, r.bias_values + b0, nb, v) : 0.0f;
    x[v] = lc::from_f<A>(lc::apply_bias_and_penalties(lc::to_f(x[v]), bias, counts >= 0, out ? out[v] : 0,
                                                      prompt ? prompt[v] : 0, presence, frequency, repetition));
  }
}

__global__ void count_tokens_kernel(int32_t *counts, int n_count_rows, int vocab, const int32_t *rows, const int32_t *ids,
                                    int n, int *err) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n || rows[i] < 0) return;
  if (rows[i] >= n_count_rows || ids[i] < 0 || ids[i] >= vocab) {
    lc::report(err, LC_DEV_TOKEN_COUNT);
    return;
  }
  atomicAdd(counts + int64_t(rows[i]) * vocab + ids[i], 1);
}

}  // namespace

extern "C" lc_status lc_logit_rules_apply(lc_ctx *ctx, lc_dtype act, void *logits, int32_t n_rows, int32_t vocab,
                                          const lc_logit_rules *rules) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  const char *contract = lc::logit_rules_contract(logits, n_rows, vocab, rules);
  LC_REQUIRE(ctx, !contract, "lc_logit_rules_apply: %s", contract);
  if (n_rows == 0) return LC_OK;
  lc_dispatch(act, [&](auto at) {
    using A = decltype(at);
    logit_rules_kernel<A><<<unsigned(n_rows), THREADS, 0, ctx->stream>>>(static_cast<A *>(logits), vocab, *rules, ctx->dev_error);
  });
  return lc::launched(ctx, "lc_logit_rules_apply");
}

extern "C" lc_status lc_count_tokens(lc_ctx *ctx, int32_t *counts, int32_t n_count_rows, int32_t vocab,
                                     const int32_t *rows, const int32_t *ids, int32_t n) {
  LC_BEGIN(ctx);
  const char *contract = lc::count_tokens_contract(counts, n_count_rows, vocab, rows, ids, n);
  LC_REQUIRE(ctx, !contract, "lc_count_tokens: %s", contract);
  if (n == 0) return LC_OK;
  count_tokens_kernel<<<lc::blocks_for(n, THREADS), THREADS, 0, ctx->stream>>>(counts, n_count_rows, vocab, rows, ids, n, ctx->dev_error);
  return lc::launched(ctx, "lc_count_tokens");
}
