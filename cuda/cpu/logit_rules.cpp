// Logit rules (grammar mask, logit_bias, penalties) and output-token counting (see loracuda.h).
#include "common.h"
#include "../logit_rules.h"

namespace {

// Device-side metadata the CUDA kernels would skip and report: the twin refuses the call instead.
const char *row_metadata_error(const lc_logit_rules &r, int32_t n_rows, int32_t vocab) {
  for (int32_t i = 0; i < n_rows; ++i) {
    if (r.mask_row && r.mask_row[i] >= r.n_mask_rows) return "a mask row >= n_mask_rows";
    if (r.count_row && r.count_row[i] >= r.n_count_rows) return "a count row >= n_count_rows";
    if (!r.bias_indptr) continue;
    if (r.bias_indptr[i] > r.bias_indptr[i + 1]) return "bias_indptr decreases";
    for (int32_t j = r.bias_indptr[i]; j < r.bias_indptr[i + 1]; ++j) {
      if (r.bias_ids[j] < 0 || r.bias_ids[j] >= vocab) return "a bias id outside [0, vocab)";
      if (j > r.bias_indptr[i] && r.bias_ids[j] <= r.bias_ids[j - 1]) return "bias ids not ascending";
    }
  }
  return nullptr;
}

}  // namespace

extern "C" lc_status lc_logit_rules_apply(lc_ctx *ctx, lc_dtype act, void *logits, int32_t n_rows, int32_t vocab,
                                          const lc_logit_rules *rules) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  const char *contract = lc::logit_rules_contract(logits, n_rows, vocab, rules);
  LC_REQUIRE(ctx, !contract, "lc_logit_rules_apply: %s", contract);
  const lc_logit_rules &r = *rules;
  const char *bad = row_metadata_error(r, n_rows, vocab);
  LC_REQUIRE(ctx, !bad, "lc_logit_rules_apply: %s", bad);
  const int64_t words = (int64_t(vocab) + 31) / 32;
  std::vector<float> row(vocab);
  for (int32_t i = 0; i < n_rows; ++i) {
    const int32_t mask = r.mask_row ? r.mask_row[i] : -1, counts = r.count_row ? r.count_row[i] : -1;
    const int32_t b0 = r.bias_indptr ? r.bias_indptr[i] : 0, nb = r.bias_indptr ? r.bias_indptr[i + 1] - b0 : 0;
    if (mask < 0 && counts < 0 && nb == 0) continue;
    lc::load_row(logits, act, int64_t(i) * vocab, vocab, row.data());
    const int32_t *out = counts >= 0 ? r.output_counts + int64_t(counts) * vocab : nullptr;
    const int32_t *prompt = counts >= 0 ? r.prompt_counts + int64_t(counts) * vocab : nullptr;
    for (int32_t v = 0; v < vocab; ++v) {
      if (mask >= 0 && !lc::token_allowed(r.allowed + mask * words, v)) {
        row[v] = -INFINITY;
        continue;
      }
      const float bias = nb ? lc::bias_for(r.bias_ids + b0, r.bias_values + b0, nb, v) : 0.0f;
      row[v] = lc::apply_bias_and_penalties(row[v], bias, counts >= 0, out ? out[v] : 0, prompt ? prompt[v] : 0,
                                            counts >= 0 ? r.presence[i] : 0.0f, counts >= 0 ? r.frequency[i] : 0.0f,
                                            counts >= 0 ? r.repetition[i] : 1.0f);
    }
    lc::store_row(logits, act, int64_t(i) * vocab, vocab, row.data());
  }
  return LC_OK;
}

extern "C" lc_status lc_count_tokens(lc_ctx *ctx, int32_t *counts, int32_t n_count_rows, int32_t vocab,
                                     const int32_t *rows, const int32_t *ids, int32_t n) {
  LC_REQUIRE_CTX(ctx);
  const char *contract = lc::count_tokens_contract(counts, n_count_rows, vocab, rows, ids, n);
  LC_REQUIRE(ctx, !contract, "lc_count_tokens: %s", contract);
  for (int32_t i = 0; i < n; ++i) {
    LC_REQUIRE(ctx, rows[i] < n_count_rows && (rows[i] < 0 || (ids[i] >= 0 && ids[i] < vocab)),
               "lc_count_tokens: entry %d (row %d, id %d) outside [%d rows, %d ids)", i, rows[i], ids[i], n_count_rows, vocab);
  }
  for (int32_t i = 0; i < n; ++i)
    if (rows[i] >= 0) ++counts[int64_t(rows[i]) * vocab + ids[i]];
  return LC_OK;
}
