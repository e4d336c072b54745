// Rotate-half RoPE (HF Llama), in place on q and k; one block per token.
#include "common.cuh"

// For head h, i < d/2:  a = float(pos[t]) * inv_freq[i];  c = cos(a)*scaling;  s = sin(a)*scaling;
//   (x[i], x[i+d/2]) = (x[i]*c - x[i+d/2]*s, x[i+d/2]*c + x[i]*s)      over q's heads, then k's.
template <typename A>
__global__ void rope_kernel(A *q, A *k, const int32_t *positions, int n_heads, int n_kv_heads, int head_dim,
                            const float *inv_freq, float scaling) {
  extern __shared__ float cs[];  // cos [half], then sin [half]
  const int half = head_dim / 2;
  const int64_t t = blockIdx.x;
  const float pos = float(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = pos * inv_freq[i];  // rounded to fp32 first, as HF does
    double s, c;
    sincos(double(angle), &s, &c);  // the twin evaluates cos/sin in double, then rounds to fp32
    cs[i] = float(c) * scaling;
    cs[half + i] = float(s) * scaling;
  }
  __syncthreads();
  const int pairs = (n_heads + n_kv_heads) * half;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int h = p / half, i = p % half;
    A *x = h < n_heads ? q + (t * n_heads + h) * head_dim : k + (t * n_kv_heads + (h - n_heads)) * head_dim;
    const float a = lc::to_f(x[i]), b = lc::to_f(x[i + half]), c = cs[i], s = cs[half + i];
    x[i] = lc::from_f<A>(a * c - b * s);
    x[i + half] = lc::from_f<A>(b * c + a * s);
  }
}

extern "C" lc_status lc_rope(lc_ctx *ctx, lc_dtype act, void *q, void *k, const int32_t *positions, int64_t n_tokens,
                             int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, const float *inv_freq,
                             float attention_scaling) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, q && k && positions && inv_freq, "lc_rope: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && n_tokens <= INT32_MAX && n_heads > 0 && n_kv_heads > 0 && head_dim > 0 &&
                      head_dim % 2 == 0 && head_dim <= 8192,
             "lc_rope: bad shape");
  if (n_tokens == 0) return LC_OK;
  const size_t smem = size_t(head_dim) * sizeof(float);
  lc_dispatch(act, [&](auto a) {
    using A = decltype(a);
    rope_kernel<A><<<unsigned(n_tokens), 256, smem, ctx->stream>>>(static_cast<A *>(q), static_cast<A *>(k), positions,
                                                                   n_heads, n_kv_heads, head_dim, inv_freq,
                                                                   attention_scaling);
  });
  return lc::launched(ctx, "lc_rope");
}
