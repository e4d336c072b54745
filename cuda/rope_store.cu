// RoPE on a fused q|k|v projection and the paged KV write, one block per token (see loracuda.h).
#include "common.cuh"

// For head h, i < d/2:  a = float(pos[t]) * inv_freq[i];  c = cos(a)*scaling;  s = sin(a)*scaling;
//   (x[i], x[i+d/2]) = (x[i]*c - x[i+d/2]*s, x[i+d/2]*c + x[i]*s)  over q's heads (into q_out), then
// k's (into the cache slot, rounded to act first, as the twin); v is copied to its slot unrotated.
template <typename A, typename C>
__global__ void rope_store_kernel(const A *qkv, const int32_t *positions, const int32_t *slot_mapping, int n_heads,
                                  int n_kv_heads, int head_dim, const float *inv_freq, float scaling, A *q_out,
                                  C *k_cache, C *v_cache, int64_t cache_slots, int *err) {
  extern __shared__ float cs[];  // cos [half], then sin [half]
  const int half = head_dim / 2;
  const int64_t t = blockIdx.x, qw = int64_t(n_heads) * head_dim, kvw = int64_t(n_kv_heads) * head_dim;
  const float pos = float(positions[t]);
  int64_t slot = slot_mapping[t];
  if (slot >= cache_slots) {
    if (threadIdx.x == 0) lc::report(err, LC_DEV_KV_SLOT);
    slot = -1;  // q is still written; the token's keys and values are skipped
  }
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = pos * inv_freq[i];  // rounded to fp32 first, as HF does
    double s, c;
    sincos(double(angle), &s, &c);  // the twin evaluates cos/sin in double, then rounds to fp32
    cs[i] = float(c) * scaling;
    cs[half + i] = float(s) * scaling;
  }
  __syncthreads();
  const A *row = qkv + t * (qw + 2 * kvw);
  const int pairs = (n_heads + n_kv_heads) * half;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int h = p / half, i = p % half;
    const A *x = row + int64_t(h) * head_dim;
    const float a = lc::to_f(x[i]), b = lc::to_f(x[i + half]), c = cs[i], s = cs[half + i];
    const A lo = lc::from_f<A>(a * c - b * s), hi = lc::from_f<A>(b * c + a * s);
    if (h < n_heads) {
      A *q = q_out + t * qw + int64_t(h) * head_dim;
      q[i] = lo;
      q[i + half] = hi;
    } else if (slot >= 0) {
      C *k = k_cache + slot * kvw + int64_t(h - n_heads) * head_dim;
      k[i] = lc::from_f<C>(lc::to_f(lo));
      k[i + half] = lc::from_f<C>(lc::to_f(hi));
    }
  }
  if (slot < 0) return;  // padding token (or a bad slot, reported above)
  for (int64_t i = threadIdx.x; i < kvw; i += blockDim.x)
    v_cache[slot * kvw + i] = lc::from_f<C>(lc::to_f(row[qw + kvw + i]));
}

extern "C" lc_status lc_rope_store(lc_ctx *ctx, lc_dtype act, const void *qkv, const int32_t *positions,
                                   const int32_t *slot_mapping, int64_t n_tokens, int32_t n_heads, int32_t n_kv_heads,
                                   int32_t head_dim, const float *inv_freq, float attention_scaling, void *q_out,
                                   lc_dtype cache_dt, void *k_cache, void *v_cache, int64_t cache_slots) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, cache_dt);
  LC_REQUIRE(ctx, qkv && positions && slot_mapping && inv_freq && q_out && k_cache && v_cache,
             "lc_rope_store: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && n_tokens <= INT32_MAX && n_heads > 0 && n_kv_heads > 0 && head_dim > 0 &&
                      head_dim % 2 == 0 && head_dim <= 8192,
             "lc_rope_store: bad shape");
  if (n_tokens == 0) return LC_OK;
  const size_t smem = size_t(head_dim) * sizeof(float);
  lc_dispatch(act, [&](auto a) {
    lc_dispatch(cache_dt, [&](auto c) {
      using A = decltype(a);
      using C = decltype(c);
      rope_store_kernel<A, C><<<unsigned(n_tokens), 256, smem, ctx->stream>>>(
          static_cast<const A *>(qkv), positions, slot_mapping, n_heads, n_kv_heads, head_dim, inv_freq,
          attention_scaling, static_cast<A *>(q_out), static_cast<C *>(k_cache), static_cast<C *>(v_cache),
          cache_slots, ctx->dev_error);
    });
  });
  return lc::launched(ctx, "lc_rope_store");
}
