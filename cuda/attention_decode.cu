// Decode attention: one query per sequence over a paged cache, K and V read straight into registers.
//
// Block (sequence s, kv head, chunk c), 4 warps. A key's head_dim values are D / 8 sixteen-byte
// vectors, so LPK = D / 8 lanes own one key at a time (a lane: 8 dims of K and V) and a warp scores
// 32 / LPK keys per step; each lane keeps U (2 or 4) keys' loads in flight. Every lane holds its 8 dims of the
// G query heads that share the kv head (GQA: one K/V read serves the group) and runs an online
// softmax over the keys its lane group sees; the groups' states merge by shuffles, the warps' through
// shared memory. No shared-memory staging and no barrier in the key loop: a decode step is bound by
// the bytes of K/V it reads, and the unsplit / split kernels (16 query rows per block, of which a
// decode row fills one per kv head under MHA) spent most of their time staging.
// Output: chunk partials (m, l, acc) for the split path's combine, or with one chunk the result.
#include "attention.cuh"

namespace {

using lc_attn::Args;
using lc_attn::Split;
constexpr int WARPS = 4, THREADS = WARPS * 32, VEC = 8;

// Merges softmax state (m2, l2, acc2) into (m, l, acc); a state with m == -inf holds no key.
template <int N> __device__ __forceinline__ void merge(float &m, float &l, float (&acc)[N], float m2, float l2,
                                                      const float (&acc2)[N]) {
  const float top = fmaxf(m, m2);
  if (top == -INFINITY) return;
  const float a = expf(m - top), b = expf(m2 - top);
  l = l * a + l2 * b;
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i] = acc[i] * a + acc2[i] * b;
  m = top;
}

// For query head h = kvh * group + g (g < group) of the sequence's one query at p = context_len - 1:
//   over keys i in (p - window, p] within chunk c:  m = max score_i, l = sum exp(score_i - m),
//   acc = sum exp(score_i - m) V[i],  score_i = scale * q[t, h] . K[i, kvh]
template <typename A, typename C, int D, int G>
__global__ void __launch_bounds__(THREADS) decode_kernel(const A *q, const C *k_cache, const C *v_cache, Args a, Split sp,
                                                          A *out) {
  lc::pdl_trigger();  // see lc::launch_pdl
  lc::pdl_wait();
  constexpr int LPK = D / VEC, KPW = 32 / LPK, KPB = WARPS * KPW;
  constexpr int U = G >= 4 ? 2 : 4;  // keys in flight per lane; wide groups spend the registers on q and acc
  __shared__ float sm_m[WARPS][G], sm_l[WARPS][G], sm_acc[WARPS][G][D];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = lane / LPK, part = lane % LPK;
  const int s = blockIdx.x, kvh = blockIdx.y, c = blockIdx.z, group = a.n_heads / a.n_kv_heads;
  if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0 &&
      (a.q_indptr[0] != 0 || a.q_indptr[a.n_seqs] != a.n_tokens))
    lc::report(a.err, LC_DEV_ATTN_SHAPE);
  const int begin = a.q_indptr[s], n_q = a.q_indptr[s + 1] - begin, ctx_len = a.context_lens[s];
  if (!lc_attn::sequence_ok(a, begin, n_q, ctx_len)) {
    if (threadIdx.x == 0 && c == 0 && kvh == 0) lc::report(a.err, LC_DEV_ATTN_SHAPE);
    return;
  }
  if (n_q == 0) return;
  const int p = ctx_len - 1, c_lo = c * sp.chunk;
  const int lo = max(lc_attn::first_key(a, p), c_lo), hi = min(p, c_lo + (sp.chunk - 1));
  if (lo > hi) return;  // no key of this chunk (the combine reads only chunks that have one)
  const int64_t q_width = int64_t(a.n_heads) * D, kv_width = int64_t(a.n_kv_heads) * D;
  const int32_t *table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;

  float qf[G][VEC], m[G], l[G], acc[G][VEC];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < VEC; ++i) qf[g][i] = acc[g][i] = 0.0f;
    if (g < group) lc::unpack8<A>(*reinterpret_cast<const uint4 *>(q + begin * q_width + int64_t(kvh * group + g) * D + part * VEC), qf[g]);
  }

  // Keys k0 + u * KPB + warp * KPW + sub: the loop bounds are uniform, so every lane reaches the shuffles.
  for (int k0 = lo; k0 <= hi; k0 += KPB * U) {
    uint4 kr[U], vr[U];
    bool live[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = k0 + u * KPB + warp * KPW + sub;
      const int64_t slot = i <= hi ? lc_attn::key_slot(a, table, i) : -1;
      live[u] = slot >= 0;
      const int64_t off = slot * kv_width + int64_t(kvh) * D + part * VEC;
      kr[u] = live[u] ? *reinterpret_cast<const uint4 *>(k_cache + off) : make_uint4(0, 0, 0, 0);
      vr[u] = live[u] ? *reinterpret_cast<const uint4 *>(v_cache + off) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[VEC], score[G];
      lc::unpack8<C>(kr[u], kf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
        for (int i = 0; i < VEC; i += 2) d0 += qf[g][i] * kf[i], d1 += qf[g][i + 1] * kf[i + 1];
        score[g] = d0 + d1;
#pragma unroll
        for (int off = LPK / 2; off >= 1; off >>= 1) score[g] += __shfl_xor_sync(0xffffffffu, score[g], off);
      }
      if (!live[u]) continue;  // uniform across the key's lanes
      float vf[VEC];
      lc::unpack8<C>(vr[u], vf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        if (g >= group) break;
        const float sc = score[g] * a.scale, top = fmaxf(m[g], sc);
        const float corr = expf(m[g] - top), w = expf(sc - top);  // corr is 0 while m is -inf
        l[g] = l[g] * corr + w;
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[g][i] = acc[g][i] * corr + w * vf[i];
        m[g] = top;
      }
    }
  }

  // Merge the warp's key groups (lanes with the same dims), then the warps.
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int off = LPK; off < 32; off <<= 1) {
      float acc2[VEC];
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc2[i] = __shfl_xor_sync(0xffffffffu, acc[g][i], off);
      const float m2 = __shfl_xor_sync(0xffffffffu, m[g], off), l2 = __shfl_xor_sync(0xffffffffu, l[g], off);
      merge(m[g], l[g], acc[g], m2, l2, acc2);
    }
    if (sub == 0) {
#pragma unroll
      for (int i = 0; i < VEC; ++i) sm_acc[warp][g][part * VEC + i] = acc[g][i];
      if (part == 0) sm_m[warp][g] = m[g], sm_l[warp][g] = l[g];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < group * D; e += THREADS) {
    const int g = e / D, d = e % D;
    float top = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) top = fmaxf(top, sm_m[w][g]);
    float sum = 0.0f, v = 0.0f;
    if (top != -INFINITY) {
#pragma unroll
      for (int w = 0; w < WARPS; ++w) {
        const float f = expf(sm_m[w][g] - top);
        sum += sm_l[w][g] * f;
        v += sm_acc[w][g][d] * f;
      }
    }
    const int h = kvh * group + g;
    if (sp.acc) {
      const int64_t row = (int64_t(c) * a.n_tokens + begin) * a.n_heads + h;
      sp.acc[row * D + d] = v;
      if (d == 0) sp.ml[row] = make_float2(top, sum);
    } else {  // one chunk: the result (zero if every key was skipped, as the unsplit kernel)
      out[begin * q_width + int64_t(h) * D + d] = lc::from_f<A>(sum > 0.0f ? v / sum : 0.0f);
    }
  }
}

template <typename A, typename C, int D>
void launch(int group, dim3 grid, const lc_ctx *ctx, const void *q, const void *k_cache, const void *v_cache,
            const Args &args, const Split &sp, void *out) {
  auto go = [&](auto g_tag) {
    constexpr int G = decltype(g_tag)::value;
    lc::launch_pdl(ctx, decode_kernel<A, C, D, G>, grid, dim3(THREADS), 0, static_cast<const A *>(q),
                   static_cast<const C *>(k_cache), static_cast<const C *>(v_cache), args, sp, static_cast<A *>(out));
  };
  if (group == 1)
    go(std::integral_constant<int, 1>{});
  else if (group == 2)
    go(std::integral_constant<int, 2>{});
  else if (group <= 4)
    go(std::integral_constant<int, 4>{});
  else
    go(std::integral_constant<int, 8>{});
}

}  // namespace

bool lc_attn::decode_supported(lc_dtype act, lc_dtype cache_dt, int head_dim, int group, const void *q,
                               const void *k_cache, const void *v_cache) {
  const bool aligned =
      (reinterpret_cast<uintptr_t>(q) | reinterpret_cast<uintptr_t>(k_cache) | reinterpret_cast<uintptr_t>(v_cache)) %
          16 == 0;
  return act != LC_F32 && cache_dt != LC_F32 && (head_dim == 64 || head_dim == 128) && group >= 1 && group <= 8 &&
         aligned;
}

void lc_attn::attention_decode(lc_dtype act, lc_dtype cache_dt, const lc_ctx *ctx, const void *q, const void *k_cache,
                               const void *v_cache, const Args &args, int head_dim, const Split &sp, void *out) {
  const dim3 grid(unsigned(args.n_seqs), unsigned(args.n_kv_heads), unsigned(sp.acc ? sp.n_splits : 1));
  const int group = args.n_heads / args.n_kv_heads;
  auto typed = [&](auto at, auto ct) {
    using A = decltype(at);
    using C = decltype(ct);
    if (head_dim == 64)
      launch<A, C, 64>(group, grid, ctx, q, k_cache, v_cache, args, sp, out);
    else
      launch<A, C, 128>(group, grid, ctx, q, k_cache, v_cache, args, sp, out);
  };
  // decode_supported admits f16 / bf16 only: four type pairs
  if (act == LC_F16 && cache_dt == LC_F16) typed(__half{}, __half{});
  else if (act == LC_F16) typed(__half{}, __nv_bfloat16{});
  else if (cache_dt == LC_F16) typed(__nv_bfloat16{}, __half{});
  else typed(__nv_bfloat16{}, __nv_bfloat16{});
}
