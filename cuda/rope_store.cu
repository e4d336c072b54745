// RoPE on a fused q|k|v projection and the paged KV write (see loracuda.h). Grid (token, group of heads):
// a token's heads spread over several blocks, each of which tabulates the token's cos/sin once.
#include "rope.cuh"

constexpr int THREADS = 128;  // a block: 16 heads of 128 at 16-byte accesses (27 us for 2048 tokens on an H200)

// For head h, i < d/2:  a = float(pos[t]) * inv_freq[i];  c = cos(a)*scaling;  s = sin(a)*scaling;
//   (x[i], x[i+d/2]) = (x[i]*c - x[i+d/2]*s, x[i+d/2]*c + x[i]*s)  over q's heads (into q_out), then
// k's (into the cache slot, rounded to act first, as the twin); v is copied to its slot unrotated.
// Thread (x, y) owns values [VEC x, VEC x + VEC) of both halves of head blockIdx.y * blockDim.y + y (VEC:
// 16 bytes of A, or 1 where rows are not aligned); heads past the grid and pairs past blockDim.x loop.
template <typename A, typename C, int VEC>
__global__ void rope_store_kernel(const A *qkv, const int32_t *positions, const int32_t *slot_mapping, int n_heads,
                                  int n_kv_heads, int head_dim, const float *inv_freq, float scaling, A *q_out,
                                  C *k_cache, C *v_cache, int64_t cache_slots, int *err) {
  lc::pdl_trigger();  // see lc::launch_pdl
  lc::pdl_wait();
  using AV = lc::Pack<A, VEC>;
  using CV = lc::Pack<C, VEC>;
  extern __shared__ float cs[];  // cos [half], then sin [half]
  const int half = head_dim / 2, heads = n_heads + 2 * n_kv_heads;
  const int64_t t = blockIdx.x, qw = int64_t(n_heads) * head_dim, kvw = int64_t(n_kv_heads) * head_dim;
  const A *row = qkv + t * (qw + 2 * kvw);
  int h = blockIdx.y * blockDim.y + threadIdx.y, i = threadIdx.x * VEC;  // i < half: blockDim.x <= half / VEC
  AV a{}, b{};
  auto load = [&] {
    if (h >= heads) return;
    a = *reinterpret_cast<const AV *>(row + int64_t(h) * head_dim + i);
    b = *reinterpret_cast<const AV *>(row + int64_t(h) * head_dim + i + half);
  };
  load();  // first, so that its latency overlaps the table's
  const int64_t mapped = slot_mapping[t];
  const int32_t position = positions[t];
  for (int j = threadIdx.y * blockDim.x + threadIdx.x; j < half; j += blockDim.x * blockDim.y) {
    const lc::RopeAngle ang = lc::rope_angle(position, inv_freq[j], scaling);
    cs[j] = ang.c;
    cs[half + j] = ang.s;
  }
  __syncthreads();
  const int64_t slot = mapped < cache_slots ? mapped : -1;  // a bad slot: q is still written, k and v skipped
  auto to_cache = [](const AV v) {
    CV o;
#pragma unroll
    for (int e = 0; e < VEC; ++e) o.v[e] = lc::from_f<C>(lc::to_f(v.v[e]));
    return o;
  };
  while (h < heads) {
    if (h >= n_heads + n_kv_heads) {  // v: a copy
      if (slot >= 0) {
        C *v = v_cache + slot * kvw + int64_t(h - n_heads - n_kv_heads) * head_dim + i;
        *reinterpret_cast<CV *>(v) = to_cache(a);
        *reinterpret_cast<CV *>(v + half) = to_cache(b);
      }
    } else {
      AV lo, hi;
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const float x = lc::to_f(a.v[e]), y = lc::to_f(b.v[e]);
        const lc::RopeAngle ang{cs[i + e], cs[half + i + e]};
        lo.v[e] = lc::from_f<A>(lc::rope_lo(x, y, ang));
        hi.v[e] = lc::from_f<A>(lc::rope_hi(x, y, ang));
      }
      if (h < n_heads) {
        A *q = q_out + t * qw + int64_t(h) * head_dim + i;
        *reinterpret_cast<AV *>(q) = lo;
        *reinterpret_cast<AV *>(q + half) = hi;
      } else if (slot >= 0) {
        C *k = k_cache + slot * kvw + int64_t(h - n_heads) * head_dim + i;
        *reinterpret_cast<CV *>(k) = to_cache(lo);
        *reinterpret_cast<CV *>(k + half) = to_cache(hi);
      }
    }
    if ((i += blockDim.x * VEC) >= half) {  // next: this head's next pairs, else the next group's head
      i = threadIdx.x * VEC;
      h += gridDim.y * blockDim.y;
    }
    load();
  }
  // reported last: a branch on the slot before the loads would make them wait for it
  if (mapped >= cache_slots && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0)
    lc::report(err, LC_DEV_KV_SLOT);
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
  const int half = head_dim / 2;
  const int64_t heads = n_heads + 2 * int64_t(n_kv_heads);
  const size_t smem = size_t(head_dim) * sizeof(float);
  // blockDim.x threads along a head's pairs (at most 1024: more loop), blockDim.y heads
  auto shape = [&](int vec, dim3 &grid, dim3 &block) {
    const int along = half / vec, bx = along < 1024 ? along : 1024;
    const int64_t fit = bx >= THREADS ? 1 : THREADS / bx, by = fit < heads ? fit : heads;  // heads a block
    const int64_t groups = (heads + by - 1) / by;
    grid = dim3(unsigned(n_tokens), unsigned(groups < 65535 ? groups : 65535));
    block = dim3(unsigned(bx), unsigned(by));
  };
  lc_dispatch(act, [&](auto a) {
    lc_dispatch(cache_dt, [&](auto c) {
      using A = decltype(a);
      using C = decltype(c);
      constexpr int VEC = 16 / sizeof(A);
      const auto qa = static_cast<const A *>(qkv);
      const auto qo = static_cast<A *>(q_out);
      const auto kc = static_cast<C *>(k_cache), vc = static_cast<C *>(v_cache);
      dim3 grid, block;
      if (half % VEC == 0 && lc::aligned16(qkv) && lc::aligned16(q_out) && lc::aligned16(k_cache) &&
          lc::aligned16(v_cache)) {
        shape(VEC, grid, block);
        lc::launch_pdl(ctx, rope_store_kernel<A, C, VEC>, grid, block, smem,
            qa, positions, slot_mapping, n_heads, n_kv_heads, head_dim, inv_freq, attention_scaling, qo, kc, vc,
            cache_slots, ctx->dev_error);
      } else {
        shape(1, grid, block);
        lc::launch_pdl(ctx, rope_store_kernel<A, C, 1>, grid, block, smem,
            qa, positions, slot_mapping, n_heads, n_kv_heads, head_dim, inv_freq, attention_scaling, qo, kc, vc,
            cache_slots, ctx->dev_error);
      }
    });
  });
  return lc::launched(ctx, "lc_rope_store");
}
