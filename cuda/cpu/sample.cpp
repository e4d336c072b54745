// Sampling and log-probabilities for one row of logits per sequence (see loracuda.h for the rules).
#include <algorithm>
#include <numeric>

#include "common.h"

// Descending by value, ascending id on ties: the order every backend must agree on.
static bool before(const std::vector<float> &v, int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); }

static int32_t sample_row(const std::vector<float> &logits, float temperature, int32_t top_k, float top_p, float u) {
  const int32_t vocab = int32_t(logits.size());
  if (temperature <= 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  int32_t kept = (top_k > 0 && top_k < vocab) ? top_k : vocab;
  std::partial_sort(order.begin(), order.begin() + kept, order.end(),
                    [&](int32_t a, int32_t b) { return before(logits, a, b); });
  std::vector<double> p(kept);
  const double top = logits[order[0]];
  double mass = 0;
  for (int32_t i = 0; i < kept; ++i) mass += p[i] = std::exp((double(logits[order[i]]) - top) / temperature);
  if (top_p < 1.0f) {  // keep a token while the mass before it is below top_p
    double before_mass = 0;
    int32_t n = 0;
    while (n < kept && before_mass < double(top_p) * mass) before_mass += p[n++];
    kept = std::max(n, 1);
  }
  double kept_mass = 0;
  for (int32_t i = 0; i < kept; ++i) kept_mass += p[i];
  const double target = double(u) * kept_mass;
  double cumulative = 0;
  for (int32_t i = 0; i < kept; ++i) {
    cumulative += p[i];
    if (cumulative > target) return order[i];
  }
  return order[kept - 1];
}

extern "C" lc_status lc_sample(lc_ctx *ctx, lc_dtype act, const void *logits, int32_t n_rows, int32_t vocab,
                               const float *temperature, const int32_t *top_k, const float *top_p,
                               const float *uniforms, int32_t n_top, int32_t *out_ids, float *out_logprob,
                               int32_t *out_top_ids, float *out_top_logprobs) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, logits && temperature && top_k && top_p && uniforms && out_ids && out_logprob,
             "lc_sample: NULL pointer");
  LC_REQUIRE(ctx, n_rows >= 0 && vocab > 0 && n_top >= 0 && n_top <= vocab, "lc_sample: bad shape");
  LC_REQUIRE(ctx, n_top == 0 || (out_top_ids && out_top_logprobs), "lc_sample: NULL top-logprob output");
  std::vector<float> row(vocab);
  std::vector<int32_t> order(vocab);
  for (int32_t r = 0; r < n_rows; ++r) {
    lc::load_row(logits, act, int64_t(r) * vocab, vocab, row.data());
    float top = row[0];
    for (float v : row) top = std::max(top, v);
    double sum = 0;
    for (float v : row) sum += std::exp(double(v) - top);
    const double lse = top + std::log(sum);
    const int32_t id = sample_row(row, temperature[r], top_k[r], top_p[r], uniforms[r]);
    out_ids[r] = id;
    out_logprob[r] = float(row[id] - lse);
    if (n_top == 0) continue;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + n_top, order.end(),
                      [&](int32_t a, int32_t b) { return before(row, a, b); });
    for (int32_t i = 0; i < n_top; ++i) {
      out_top_ids[int64_t(r) * n_top + i] = order[i];
      out_top_logprobs[int64_t(r) * n_top + i] = float(row[order[i]] - lse);
    }
  }
  return LC_OK;
}
