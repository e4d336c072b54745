// Sampling and log-probabilities for one row of logits per sequence (see loracuda.h for the rules).
// Linear in the vocabulary: the top-k set, the top-p cut and the sampled token are each found by
// selection (expected O(V)) instead of sorting the row; the answer is the one the sorted walk gives.
#include <algorithm>
#ifdef __AVX__
#include <immintrin.h>
#endif
#include <numeric>

#include "common.h"
#include "../logit_rules.h"

namespace {

// GCC leaves the upper AVX halves dirty after std::partial_sort here; every libm exp that follows
// then pays an SSE/AVX transition (measured: 3.7 ms a 32,000-token row instead of 0.2)
inline void clean_upper_registers() {
#ifdef __AVX__
  _mm256_zeroupper();
#endif
}

// Descending by value, ascending id on ties: the order every backend must agree on.
struct Before {
  const float *v;
  bool operator()(int32_t a, int32_t b) const { return v[a] > v[b] || (v[a] == v[b] && a < b); }
};

// The element of ids[0, n) at which the walk in Before order first has base + cumulative weight
// `reaches` target (>= when inclusive, > otherwise); the walk's last element when it never does.
// Weighted quickselect: each pass partitions around a pivot and keeps the half holding the crossing.
int32_t crossing(int32_t *ids, int32_t n, const double *w, Before before, double target, bool inclusive, double *mass_before) {
  auto reaches = [&](double m) { return inclusive ? m >= target : m > target; };
  double base = 0;
  int32_t lo = 0, hi = n;  // the crossing lies in [lo, hi); everything before lo sums to base
  uint64_t state = 0x9e3779b97f4a7c15ull;
  while (hi - lo > 1) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;  // xorshift pivot: no adversarial rows
    std::swap(ids[lo + int32_t(state % uint64_t(hi - lo))], ids[hi - 1]);
    const int32_t pivot = ids[hi - 1];
    const int32_t mid = int32_t(std::partition(ids + lo, ids + hi - 1, [&](int32_t i) { return before(i, pivot); }) - ids);
    std::swap(ids[mid], ids[hi - 1]);
    double left = 0;
    for (int32_t i = lo; i < mid; ++i) left += w[ids[i]];
    if (mid > lo && reaches(base + left)) {
      hi = mid;
    } else if (reaches(base + left + w[pivot]) || mid + 1 == hi) {
      if (mass_before) *mass_before = base + left;
      return mid;
    } else {
      base += left + w[pivot];
      lo = mid + 1;
    }
  }
  if (mass_before) *mass_before = base;
  return lo;
}

int32_t sample_row(const float *logits, int32_t vocab, float temperature, int32_t top_k, float top_p, float min_p,
                   float u, std::vector<int32_t> &ids, std::vector<double> &w) {
  if (temperature <= 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  const Before before{logits};
  std::iota(ids.begin(), ids.end(), 0);
  int32_t kept = (top_k > 0 && top_k < vocab) ? top_k : vocab;
  // a small top_k: a bounded heap rejects most of the row in one compare; else a linear selection
  if (kept <= 256) {
    std::partial_sort(ids.begin(), ids.begin() + kept, ids.end(), before);
    clean_upper_registers();
  }
  else if (kept < vocab) std::nth_element(ids.begin(), ids.begin() + kept - 1, ids.end(), before);
  float top = logits[0];
  for (int32_t i = 1; i < vocab; ++i) top = std::max(top, logits[i]);
  if (min_p > 0.0f) {  // min_p: of the top-k, the tokens within a factor min_p of the most likely (a prefix)
    const float threshold = lc::min_p_log_threshold(min_p);
    kept = int32_t(std::partition(ids.begin(), ids.begin() + kept, [&](int32_t i) { return (logits[i] - top) / temperature >= threshold; }) - ids.begin());
  }
  double mass = 0;
  for (int32_t i = 0; i < kept; ++i) mass += w[ids[i]] = std::exp((double(logits[ids[i]]) - top) / temperature);
  double kept_mass = mass;
  if (top_p < 1.0f) {  // keep tokens through the first whose cumulative mass reaches top_p
    double mass_before = 0;
    const int32_t last = crossing(ids.data(), kept, w.data(), before, double(top_p) * mass, true, &mass_before);
    kept_mass = mass_before + w[ids[last]];
    kept = last + 1;
  }
  return ids[crossing(ids.data(), kept, w.data(), before, double(u) * kept_mass, false, nullptr)];
}

}  // namespace

extern "C" lc_status lc_sample(lc_ctx *ctx, lc_dtype act, const void *logits, int32_t n_rows, int32_t vocab,
                               const float *temperature, const int32_t *top_k, const float *top_p,
                               const float *min_p, const float *uniforms, int32_t n_top, int32_t *out_ids, float *out_logprob,
                               int32_t *out_top_ids, float *out_top_logprobs) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, logits && temperature && top_k && top_p && min_p && uniforms && out_ids && out_logprob,
             "lc_sample: NULL pointer");
  LC_REQUIRE(ctx, n_rows >= 0 && vocab > 0 && n_top >= 0 && n_top <= vocab, "lc_sample: bad shape");
  LC_REQUIRE(ctx, n_top == 0 || (out_top_ids && out_top_logprobs), "lc_sample: NULL top-logprob output");
  std::vector<float> row(vocab);
  std::vector<int32_t> ids(vocab);
  std::vector<double> w(vocab);
  for (int32_t r = 0; r < n_rows; ++r) {
    lc::load_row(logits, act, int64_t(r) * vocab, vocab, row.data());
    float top = row[0];
    for (float v : row) top = std::max(top, v);
    double sum = 0;
    for (float v : row) sum += std::exp(double(v) - top);
    const double lse = top + std::log(sum);
    const int32_t id = sample_row(row.data(), vocab, temperature[r], top_k[r], top_p[r], min_p[r], uniforms[r], ids, w);
    out_ids[r] = id;
    out_logprob[r] = float(row[id] - lse);
    if (n_top == 0) continue;
    const Before before{row.data()};
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + n_top, ids.end(), before);  // n_top <= 20 in the API
    clean_upper_registers();
    for (int32_t i = 0; i < n_top; ++i) {
      out_top_ids[int64_t(r) * n_top + i] = ids[i];
      out_top_logprobs[int64_t(r) * n_top + i] = float(row[ids[i]] - lse);
    }
  }
  return LC_OK;
}
