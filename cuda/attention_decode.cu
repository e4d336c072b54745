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
// Output: with a sequence's keys in one chunk, the result; otherwise chunk partials (m, l, acc) in the
// split workspace, merged by the last chunk block of the (sequence, kv head) to finish, so no combine
// kernel runs after this one.
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

// The merge of one (sequence, kv head)'s chunk partials by one block. For each head g < group of the
// kv head, over its n live chunks c (rows ml[c * stride + g], acc[(c * stride + g) * D]):
//   o[g * D + d] = sum_c exp(m_c - M) acc_c[d] / sum_c exp(m_c - M) l_c,   M = max_c m_c
// (zero if no key was valid), as combine_kernel (attention_split.cu) computes it and in its order of
// summation, so the two round alike: a warp a head finds the weights, its lanes standing in for
// combine_kernel's 4 warps; then each thread takes combine_kernel's float4 column and chunk group in
// every head. The partials of other blocks are read through L2 (__ldcg), never a stale L1 line.
template <typename A, int D, int G>
__device__ __forceinline__ void merge_chunks(const float *acc_in, const float2 *ml_in, int64_t stride, int n, int group,
                                             A *o) {
  static_assert(THREADS == 128, "combine_kernel's block, whose order of summation this follows");
  constexpr int QUADS = D / 4, GROUPS = THREADS / QUADS, SLOTS = lc_attn::MAX_SPLITS / THREADS;
  __shared__ union {
    float2 ml[G][lc_attn::MAX_SPLITS];  // chunk (max, sum), then (weight, sum)
    float4 parts[G][GROUPS][QUADS];     // once the weights are used: the chunk groups' sums
  } sm;
  __shared__ float inv[G];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int e = threadIdx.x; e < group * n; e += THREADS) sm.ml[e / n][e % n] = __ldcg(ml_in + (e % n) * stride + e / n);
  __syncthreads();
  for (int g = warp; g < group; g += WARPS) {
    float top = -INFINITY;
    for (int i = lane; i < n; i += 32) top = fmaxf(top, sm.ml[g][i].x);
    top = lc::warp_max(top);
    float sum[WARPS];  // lane: combine_kernel's threads w * 32 + lane, chunks w * 32 + lane + THREADS * j
#pragma unroll
    for (int w = 0; w < WARPS; ++w) {
      sum[w] = 0.0f;
#pragma unroll
      for (int j = 0; j < SLOTS; ++j) {
        const int i = w * 32 + lane + THREADS * j;
        if (i >= n) break;
        float2 &c = sm.ml[g][i];
        c.x = top == -INFINITY ? 0.0f : expf(c.x - top);
        sum[w] += c.x * c.y;
      }
      sum[w] = lc::warp_sum(sum[w]);
    }
    // lc::block_sum's order over 4 warps; 0 when every key was skipped (combine_kernel writes zeros)
    if (lane == 0) inv[g] = top == -INFINITY ? 0.0f : 1.0f / ((sum[0] + sum[2]) + (sum[1] + sum[3]));
  }
  __syncthreads();
  const int k = threadIdx.x / QUADS, qd = threadIdx.x % QUADS;
  float4 acc[G];
#pragma unroll
  for (int g = 0; g < G; ++g) acc[g] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 2
  for (int i = k; i < n; i += GROUPS) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (g >= group) break;
      const float4 v = __ldcg(reinterpret_cast<const float4 *>(acc_in + (i * stride + g) * D) + qd);
      const float w = sm.ml[g][i].x;
      acc[g].x += w * v.x, acc[g].y += w * v.y, acc[g].z += w * v.z, acc[g].w += w * v.w;
    }
  }
  __syncthreads();  // the weights are read: sm.parts may overwrite them
#pragma unroll
  for (int g = 0; g < G; ++g)
    if (g < group) sm.parts[g][k][qd] = acc[g];
  __syncthreads();
  for (int e = threadIdx.x; e < group * QUADS; e += THREADS) {
    const int g = e / QUADS, c = e % QUADS;
    float4 total = sm.parts[g][0][c];
    for (int j = 1; j < GROUPS; ++j) {
      const float4 v = sm.parts[g][j][c];
      total.x += v.x, total.y += v.y, total.z += v.z, total.w += v.w;
    }
    A *out = o + g * D + 4 * c;
    out[0] = lc::from_f<A>(total.x * inv[g]);
    out[1] = lc::from_f<A>(total.y * inv[g]);
    out[2] = lc::from_f<A>(total.z * inv[g]);
    out[3] = lc::from_f<A>(total.w * inv[g]);
  }
}

// For query head h = kvh * group + g (g < group) of the sequence's one query at p = context_len - 1:
//   over keys i in (p - window, p] within chunk c:  m = max score_i, l = sum exp(score_i - m),
//   acc = sum exp(score_i - m) V[i],  score_i = scale * q[t, h] . K[i, kvh]
// With the keys in one chunk, out[t, h] = acc / l; otherwise the partials go to the workspace and
// the chunk block that arrives last (sp.arrivals) merges them (merge_chunks).
template <typename A, typename C, int D, int G>
__global__ void __launch_bounds__(THREADS) decode_kernel(const A *q, const C *k_cache, const C *v_cache, Args a, Split sp,
                                                          A *out) {
  lc::pdl_trigger();  // see lc::launch_pdl
  constexpr int LPK = D / VEC, KPW = 32 / LPK, KPB = WARPS * KPW;
  constexpr int U = G >= 4 ? 2 : 4;  // keys in flight per lane; wide groups spend the registers on q and acc
  constexpr int PREFETCH = 64;       // keys a block pulls into L2 before pdl_wait (a full wave's: ~35 MB at D 128)
  __shared__ float sm_m[WARPS][G], sm_l[WARPS][G], sm_acc[WARPS][G][D];
  __shared__ bool sm_last;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = lane / LPK, part = lane % LPK;
  const int s = blockIdx.x, kvh = blockIdx.y, c = blockIdx.z, group = a.n_heads / a.n_kv_heads;
  // Before pdl_wait, reads only what no kernel of this step writes: the metadata (uploaded before the
  // step) and keys < p (stored by earlier steps); rope_store, just before, writes q and key p.
  const int begin = a.q_indptr[s], n_q = a.q_indptr[s + 1] - begin, ctx_len = a.context_lens[s];
  const bool ok = lc_attn::sequence_ok(a, begin, n_q, ctx_len);
  const int p = ctx_len - 1, c_lo = c * sp.chunk;
  const int lo = max(lc_attn::first_key(a, p), c_lo), hi = min(p, c_lo + (sp.chunk - 1));
  const bool keys = ok && n_q > 0 && lo <= hi;  // else no key of this chunk (the merge reads only chunks that have one)
  const int64_t q_width = int64_t(a.n_heads) * D, kv_width = int64_t(a.n_kv_heads) * D;
  const int32_t *table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;

  if (keys) {  // the chunk's first PREFETCH keys < p into L2, overlapping the previous kernel
    const int last = min(hi, p - 1);
#pragma unroll
    for (int j = 0; j < PREFETCH; j += KPB) {
      const int i = lo + j + warp * KPW + sub;
      const int64_t slot = i <= last ? lc_attn::cache_slot(a, table, i) : -1;
      if (slot < 0) continue;
      const int64_t off = slot * kv_width + int64_t(kvh) * D + part * VEC;
      lc::prefetch_l2(k_cache + off);
      lc::prefetch_l2(v_cache + off);
    }
  }
  lc::pdl_wait();
  if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0 &&
      (a.q_indptr[0] != 0 || a.q_indptr[a.n_seqs] != a.n_tokens))
    lc::report(a.err, LC_DEV_ATTN_SHAPE);
  if (!ok) {
    if (threadIdx.x == 0 && c == 0 && kvh == 0) lc::report(a.err, LC_DEV_ATTN_SHAPE);
    return;
  }
  if (!keys) return;

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
  const lc_attn::Chunks chunks = lc_attn::live_chunks(a, sp, p);  // one unless sp splits these keys
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
    if (chunks.n > 1) {
      const int64_t row = (int64_t(c) * a.n_tokens + begin) * a.n_heads + h;
      sp.acc[row * D + d] = v;
      if (d == 0) sp.ml[row] = make_float2(top, sum);
    } else {  // the result (zero if every key was skipped, as the unsplit kernel)
      out[begin * q_width + int64_t(h) * D + d] = lc::from_f<A>(sum > 0.0f ? v / sum : 0.0f);
    }
  }
  if (chunks.n == 1) return;

  // Arrival: partials, fence, count. The block that completes the count merges, then zeroes the
  // counter for the next call (graph replays included): every chunk block of the head has arrived.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned *count = sp.arrivals + int64_t(s) * a.n_kv_heads + kvh;
    sm_last = atomicAdd(count, 1u) == unsigned(chunks.n - 1);
    if (sm_last) {
      *count = 0;
      __threadfence();  // the others' partials, fenced before their counts, are visible past here
    }
  }
  __syncthreads();
  if (!sm_last) return;
  const int64_t stride = a.n_tokens * a.n_heads, first = (chunks.c0 * a.n_tokens + begin) * a.n_heads + kvh * group;
  merge_chunks<A, D, G>(sp.acc + first * D, sp.ml + first, stride, chunks.n, group,
                        out + begin * q_width + int64_t(kvh * group) * D);
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
