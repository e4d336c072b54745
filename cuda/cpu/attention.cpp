#include <algorithm>

#include "common.h"

extern "C" lc_status lc_attention(lc_ctx *ctx, lc_dtype act, const void *q, lc_dtype cache_dt, const void *k_cache,
                                  const void *v_cache, int64_t cache_slots, const int32_t *q_indptr,
                                  const int32_t *context_lens, const int32_t *block_tables, int32_t max_blocks_per_seq,
                                  int32_t n_seqs, int64_t n_tokens, int32_t max_q_len, int32_t max_context_len,
                                  int32_t block_size, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                                  int32_t sliding_window, float scale, void *workspace,
                                  uint64_t workspace_bytes, void *out) {
  (void)workspace;  // the twin never splits a sequence's keys
  (void)workspace_bytes;
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, cache_dt);
  LC_REQUIRE(ctx, q && k_cache && v_cache && q_indptr && context_lens && block_tables && out,
             "lc_attention: NULL pointer");
  LC_REQUIRE(ctx, n_seqs >= 0 && block_size > 0 && head_dim > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0,
             "lc_attention: bad shape");
  LC_REQUIRE(ctx, q_indptr[0] == 0 && q_indptr[n_seqs] == n_tokens, "lc_attention: q_indptr does not span %lld tokens",
             (long long)n_tokens);
  const int32_t group = n_heads / n_kv_heads;
  const int64_t q_width = int64_t(n_heads) * head_dim, kv_width = int64_t(n_kv_heads) * head_dim;
  std::vector<float> qv(head_dim), acc(head_dim), kv(head_dim), scores;
  for (int32_t s = 0; s < n_seqs; ++s) {
    const int32_t begin = q_indptr[s], n_q = q_indptr[s + 1] - begin, ctx_len = context_lens[s];
    LC_REQUIRE(ctx, n_q >= 0 && n_q <= max_q_len && ctx_len >= n_q && ctx_len <= max_context_len,
               "lc_attention: sequence %d has %d queries over %d positions (bounds %d, %d)", s, n_q, ctx_len,
               max_q_len, max_context_len);
    LC_REQUIRE(ctx, (ctx_len + block_size - 1) / block_size <= max_blocks_per_seq,
               "lc_attention: sequence %d needs more than %d blocks", s, max_blocks_per_seq);
    const int32_t *table = block_tables + int64_t(s) * max_blocks_per_seq;
    for (int32_t j = 0; j < n_q; ++j) {
      const int64_t t = begin + j;
      const int32_t pos = ctx_len - n_q + j;
      const int32_t first = sliding_window > 0 ? std::max(0, pos - sliding_window + 1) : 0;
      scores.resize(pos - first + 1);
      for (int32_t h = 0; h < n_heads; ++h) {
        const int64_t kv_head = h / group;
        lc::load_row(q, act, t * q_width + h * head_dim, head_dim, qv.data());
        float max_score = -INFINITY;
        for (int32_t i = first; i <= pos; ++i) {
          const int64_t slot = int64_t(table[i / block_size]) * block_size + i % block_size;
          LC_REQUIRE(ctx, slot >= 0 && slot < cache_slots, "lc_attention: block table points outside the cache");
          lc::load_row(k_cache, cache_dt, slot * kv_width + kv_head * head_dim, head_dim, kv.data());
          scores[i - first] = lc::dot(qv.data(), kv.data(), head_dim) * scale;
          max_score = std::max(max_score, scores[i - first]);
        }
        float total = 0;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int32_t i = first; i <= pos; ++i) {
          const float p = std::exp(scores[i - first] - max_score);
          total += p;
          const int64_t slot = int64_t(table[i / block_size]) * block_size + i % block_size;
          lc::load_row(v_cache, cache_dt, slot * kv_width + kv_head * head_dim, head_dim, kv.data());
          for (int32_t d = 0; d < head_dim; ++d) acc[d] += p * kv[d];
        }
        for (int32_t d = 0; d < head_dim; ++d) acc[d] /= total;
        lc::store_row(out, act, t * q_width + h * head_dim, head_dim, acc.data());
      }
    }
  }
  return LC_OK;
}

extern "C" uint64_t lc_attention_workspace_bytes(int64_t n_tokens, int32_t n_seqs, int32_t max_q_len,
                                                 int32_t max_context_len, int32_t n_heads, int32_t head_dim) {
  (void)n_tokens, (void)n_seqs, (void)max_q_len, (void)max_context_len, (void)n_heads, (void)head_dim;
  return 0;
}
