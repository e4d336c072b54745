#include "common.h"

static void rotate(void *x, lc_dtype act, int64_t base, int32_t half, const float *cos_t, const float *sin_t) {
  for (int32_t i = 0; i < half; ++i) {
    float a = lc::load(x, act, base + i), b = lc::load(x, act, base + i + half);
    lc::store(x, act, base + i, a * cos_t[i] - b * sin_t[i]);
    lc::store(x, act, base + i + half, b * cos_t[i] + a * sin_t[i]);
  }
}

extern "C" lc_status lc_rope(lc_ctx *ctx, lc_dtype act, void *q, void *k, const int32_t *positions, int64_t n_tokens,
                             int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, const float *inv_freq,
                             float attention_scaling) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, q && k && positions && inv_freq, "lc_rope: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && n_heads > 0 && n_kv_heads > 0 && head_dim > 0 && head_dim % 2 == 0,
             "lc_rope: bad shape");
  const int32_t half = head_dim / 2;
  std::vector<float> cos_t(half), sin_t(half);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int32_t i = 0; i < half; ++i) {
      // HF computes the angle and its cos/sin in fp32; the product is rounded to fp32 first.
      float angle = float(positions[t]) * inv_freq[i];
      cos_t[i] = float(std::cos(double(angle))) * attention_scaling;
      sin_t[i] = float(std::sin(double(angle))) * attention_scaling;
    }
    for (int32_t h = 0; h < n_heads; ++h) rotate(q, act, (t * n_heads + h) * head_dim, half, cos_t.data(), sin_t.data());
    for (int32_t h = 0; h < n_kv_heads; ++h)
      rotate(k, act, (t * n_kv_heads + h) * head_dim, half, cos_t.data(), sin_t.data());
  }
  return LC_OK;
}
