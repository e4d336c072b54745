// RoPE on a fused q|k|v projection, then the paged KV write (see loracuda.h).
#include "common.h"

// Rotates one head of `width` values in place (x is fp32, rounded to act after, as the GPU does).
static void rotate(float *x, int32_t half, const float *cos_t, const float *sin_t) {
  for (int32_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos_t[i] - b * sin_t[i];
    x[i + half] = b * cos_t[i] + a * sin_t[i];
  }
}

extern "C" lc_status lc_rope_store(lc_ctx *ctx, lc_dtype act, const void *qkv, const int32_t *positions,
                                   const int32_t *slot_mapping, int64_t n_tokens, int32_t n_heads, int32_t n_kv_heads,
                                   int32_t head_dim, const float *inv_freq, float attention_scaling, void *q_out,
                                   lc_dtype cache_dt, void *k_cache, void *v_cache, int64_t cache_slots) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, cache_dt);
  LC_REQUIRE(ctx, qkv && positions && slot_mapping && inv_freq && q_out && k_cache && v_cache,
             "lc_rope_store: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && n_heads > 0 && n_kv_heads > 0 && head_dim > 0 && head_dim % 2 == 0,
             "lc_rope_store: bad shape");
  const int32_t half = head_dim / 2;
  const int64_t qw = int64_t(n_heads) * head_dim, kvw = int64_t(n_kv_heads) * head_dim, row = qw + 2 * kvw;
  std::vector<float> cos_t(half), sin_t(half), x(row);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    LC_REQUIRE(ctx, slot < cache_slots, "lc_rope_store: slot %lld outside the cache (%lld slots)", (long long)slot,
               (long long)cache_slots);
    for (int32_t i = 0; i < half; ++i) {
      // HF computes the angle and its cos/sin in fp32; the product is rounded to fp32 first.
      const float angle = float(positions[t]) * inv_freq[i];
      cos_t[i] = float(std::cos(double(angle))) * attention_scaling;
      sin_t[i] = float(std::sin(double(angle))) * attention_scaling;
    }
    lc::load_row(qkv, act, t * row, row, x.data());
    for (int64_t h = 0; h < n_heads + n_kv_heads; ++h) rotate(x.data() + h * head_dim, half, cos_t.data(), sin_t.data());
    for (int64_t i = 0; i < qw + kvw; ++i) x[i] = lc::round_to(act, x[i]);
    lc::store_row(q_out, act, t * qw, qw, x.data());
    if (slot < 0) continue;  // padding token
    lc::store_row(k_cache, cache_dt, slot * kvw, kvw, x.data() + qw);
    lc::store_row(v_cache, cache_dt, slot * kvw, kvw, x.data() + qw + kvw);
  }
  return LC_OK;
}
