// Split-KV ("flash-decoding") attention for few queries over long contexts.
//
// Pass 1, block (sequence s, row tile, kv head, chunk c): the rows of the unsplit kernel, but only the
// keys of chunk c, [c * chunk, (c+1) * chunk); it stores each row's unnormalised partial softmax
// (max m, sum l, acc[D]) in the workspace. Chunks past a sequence's keys exit at once, so a graph
// recorded for max_context_len replays cheaply for shorter contexts. K/V tiles travel as 16-byte
// vectors through registers: the next tile's loads are in flight while the current one is scored.
// Pass 2, block (token, head): merges that row's live chunks, the same ones pass 1 wrote:
// c in [first_key / chunk, last_key / chunk].
#include "attention.cuh"

namespace {

using lc_attn::Args;
using lc_attn::ROWS;
constexpr int WARPS = 4, THREADS = WARPS * 32, ROWS_PER_WARP = ROWS / WARPS, BK = 32;
static_assert(WARPS == lc_attn::QueryRows<64>::WARPS, "QueryRows lays rows out over these warps");

using lc_attn::Split;
using lc_attn::first_key;
using lc_attn::sequence_ok;

// out[t, h] over keys (p - window, p] of chunk c only, unnormalised:
//   m = max_i score_i,  l = sum_i exp(score_i - m),  acc = sum_i exp(score_i - m) V[i]
// with score_i = scale * q[t, h] . K[i, h / group], stored for each row whose keys meet the chunk.
template <typename A, typename C, int D>
__global__ void __launch_bounds__(THREADS) split_kernel(const A *q, const C *k_cache, const C *v_cache, Args a,
                                                         Split sp) {
  constexpr int PER_LANE = D / 32;
  constexpr int VEC = 16 / sizeof(C), VPR = D / VEC, VPT = BK * VPR / THREADS;  // 16-byte vectors
  static_assert(BK * VPR % THREADS == 0, "tile must split evenly into 16-byte vectors");
  __shared__ float qs[ROWS][D];
  __shared__ float ks[BK][D + 1];  // +1: lane k reads row k, conflict-free
  __shared__ float vs[BK][D];
  __shared__ int64_t slots[2][BK];  // this tile's and the next tile's cache slots (-1: none)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int s = blockIdx.x / a.row_tiles, tile = blockIdx.x % a.row_tiles, kvh = blockIdx.y, c = blockIdx.z;
  const int group = a.n_heads / a.n_kv_heads;
  if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0 &&
      (a.q_indptr[0] != 0 || a.q_indptr[a.n_seqs] != a.n_tokens))
    lc::report(a.err, LC_DEV_ATTN_SHAPE);

  const int begin = a.q_indptr[s], n_q = a.q_indptr[s + 1] - begin, ctx_len = a.context_lens[s];
  if (!sequence_ok(a, begin, n_q, ctx_len)) {
    if (threadIdx.x == 0 && c == 0) lc::report(a.err, LC_DEV_ATTN_SHAPE);
    return;
  }
  const int f0 = tile * ROWS;
  if (f0 / group >= n_q) return;  // this tile lies past the sequence's queries
  const int j_last = min(n_q - 1, (f0 + ROWS - 1) / group);
  const int c_lo = c * sp.chunk, c_hi = c_lo + sp.chunk - 1;
  const int lo = max(first_key(a, ctx_len - n_q + f0 / group), c_lo), hi = min(ctx_len - n_q + j_last, c_hi);
  if (lo > hi) return;  // no key of this chunk for any row of the tile
  const int64_t kv_width = int64_t(a.n_kv_heads) * D;
  const int32_t *table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;

  lc_attn::QueryRows<D> rows;  // the 16 query rows in qs, this warp's softmax state
  rows.load(qs, q, a, begin, n_q, ctx_len, f0, kvh, group, warp);
  // Slot of key i (or -1 past hi / for an entry outside the cache).
  auto slot_of = [&](int i) -> int64_t { return i > hi ? -1 : lc_attn::key_slot(a, table, i); };
  uint4 kreg[VPT], vreg[VPT];
  auto issue = [&](const int64_t *tile_slots) {  // loads one tile into registers
#pragma unroll
    for (int u = 0; u < VPT; ++u) {
      const int e = threadIdx.x + u * THREADS, kk = e / VPR, part = e % VPR;
      const int64_t slot = tile_slots[kk];
      const int64_t off = slot * kv_width + int64_t(kvh) * D + part * VEC;
      kreg[u] = slot >= 0 ? *reinterpret_cast<const uint4 *>(k_cache + off) : make_uint4(0, 0, 0, 0);
      vreg[u] = slot >= 0 ? *reinterpret_cast<const uint4 *>(v_cache + off) : make_uint4(0, 0, 0, 0);
    }
  };
  auto commit = [&]() {  // registers -> fp32 tiles in shared memory
#pragma unroll
    for (int u = 0; u < VPT; ++u) {
      const int e = threadIdx.x + u * THREADS, kk = e / VPR, part = e % VPR;
      const C *kv = reinterpret_cast<const C *>(&kreg[u]);
      const C *vv = reinterpret_cast<const C *>(&vreg[u]);
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        ks[kk][part * VEC + i] = lc::to_f(kv[i]);
        vs[kk][part * VEC + i] = lc::to_f(vv[i]);
      }
    }
  };

  if (threadIdx.x < BK) slots[0][threadIdx.x] = slot_of(lo + threadIdx.x);
  __syncthreads();  // slots[0] and qs ready
  issue(slots[0]);
  int buf = 0;
  for (int k0 = lo; k0 <= hi; k0 += BK, buf ^= 1) {
    commit();
    if (threadIdx.x < BK) slots[buf ^ 1][threadIdx.x] = slot_of(k0 + BK + threadIdx.x);
    __syncthreads();  // ks / vs hold this tile; the next tile's slots are known
    if (k0 + BK <= hi) issue(slots[buf ^ 1]);
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; ++rr) {
      if (!rows.valid[rr]) continue;  // uniform across the warp
      const int r = warp + WARPS * rr, i = k0 + lane;
      const bool live = i >= rows.first[rr] && i <= rows.last[rr] && slots[buf][lane] >= 0;
      lc_attn::softmax_tile(qs[r], ks, vs, lane, live, a.scale, rows.m[rr], rows.l[rr], rows.acc[rr]);
    }
    __syncthreads();  // this tile consumed before the next commit overwrites it
  }

#pragma unroll
  for (int rr = 0; rr < ROWS_PER_WARP; ++rr) {
    if (!rows.valid[rr] || rows.first[rr] > c_hi || rows.last[rr] < c_lo) continue;  // the combine skips this chunk too
    const int f = f0 + warp + WARPS * rr, j = f / group, h = kvh * group + f % group;
    const int64_t row = (int64_t(c) * a.n_tokens + begin + j) * a.n_heads + h;
#pragma unroll
    for (int cc = 0; cc < PER_LANE; ++cc) sp.acc[row * D + lane + 32 * cc] = rows.acc[rr][cc];
    if (lane == 0) sp.ml[row] = make_float2(rows.m[rr], rows.l[rr]);
  }
}

template <typename T> __device__ T block_max(T v, T *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = lc::warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : T(-INFINITY);
  return lc::warp_max(v);
}

constexpr int MAX_SPLITS = 256;

// out[t, h] = sum_c exp(m_c - M) acc_c / sum_c exp(m_c - M) l_c,   M = max_c m_c,
// over the row's live chunks c (zero if no key was valid, as the unsplit kernel).
template <typename A, int D>
__global__ void __launch_bounds__(THREADS) combine_kernel(Args a, Split sp, A *out) {
  lc::pdl_trigger();  // see lc::launch_pdl
  lc::pdl_wait();
  constexpr int QUADS = D / 4, GROUPS = THREADS / QUADS;  // float4 columns; chunk groups summed apart
  __shared__ float weight[MAX_SPLITS];
  __shared__ float scratch[32];
  __shared__ float4 part[GROUPS][QUADS];
  const int s = blockIdx.x / a.max_q_len, j = blockIdx.x % a.max_q_len, h = blockIdx.y;
  const int begin = a.q_indptr[s], n_q = a.q_indptr[s + 1] - begin, ctx_len = a.context_lens[s];
  if (!sequence_ok(a, begin, n_q, ctx_len) || j >= n_q) return;  // pass 1 reported a bad sequence
  const int64_t t = begin + j;
  const int p = ctx_len - n_q + j, c0 = first_key(a, p) / sp.chunk, n_live = min(p / sp.chunk, sp.n_splits - 1) - c0 + 1;
  auto row = [&](int i) { return (int64_t(c0 + i) * a.n_tokens + t) * a.n_heads + h; };
  A *o = out + (t * a.n_heads + h) * D;

  float mx = -INFINITY;
  for (int i = threadIdx.x; i < n_live; i += THREADS) mx = fmaxf(mx, sp.ml[row(i)].x);
  const float top = block_max(mx, scratch);
  if (top == -INFINITY) {  // every key of the row was skipped (bad block table entries)
    for (int d = threadIdx.x; d < D; d += THREADS) o[d] = lc::from_f<A>(0.0f);
    return;
  }
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n_live; i += THREADS) {
    const float2 ml = sp.ml[row(i)];
    weight[i] = expf(ml.x - top);
    sum += weight[i] * ml.y;
  }
  sum = lc::block_sum(sum, scratch);  // its barriers publish weight[]
  const int g = threadIdx.x / QUADS, qd = threadIdx.x % QUADS;
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
  for (int i = g; i < n_live; i += GROUPS) {
    const float4 v = reinterpret_cast<const float4 *>(sp.acc + row(i) * D)[qd];
    const float w = weight[i];
    acc.x += w * v.x, acc.y += w * v.y, acc.z += w * v.z, acc.w += w * v.w;
  }
  part[g][qd] = acc;
  __syncthreads();
  if (threadIdx.x >= QUADS) return;
  float4 total = part[0][qd];
  for (int k = 1; k < GROUPS; ++k) {
    const float4 v = part[k][qd];
    total.x += v.x, total.y += v.y, total.z += v.z, total.w += v.w;
  }
  const float inv = 1.0f / sum;
  o[4 * qd] = lc::from_f<A>(total.x * inv);
  o[4 * qd + 1] = lc::from_f<A>(total.y * inv);
  o[4 * qd + 2] = lc::from_f<A>(total.z * inv);
  o[4 * qd + 3] = lc::from_f<A>(total.w * inv);
}

template <int D>
void launch(lc_dtype act, lc_dtype cache_dt, const lc_ctx *ctx, const void *q, const void *k_cache,
            const void *v_cache, const Args &args, const Split &sp, void *out) {
  const dim3 grid(unsigned(args.row_tiles * args.n_seqs), unsigned(args.n_kv_heads), unsigned(sp.n_splits));
  const dim3 combine_grid(unsigned(args.n_seqs * args.max_q_len), unsigned(args.n_heads));
  lc_dispatch(act, [&](auto at) {
    using A = decltype(at);
    if (args.max_q_len == 1 && lc_attn::decode_supported(act, cache_dt, D, args.n_heads / args.n_kv_heads, q, k_cache,
                                                            v_cache)) {
      lc_attn::attention_decode(act, cache_dt, ctx, q, k_cache, v_cache, args, D, sp, out);
    } else {
      lc_dispatch(cache_dt, [&](auto ct) {
        using C = decltype(ct);
        split_kernel<A, C, D><<<grid, THREADS, 0, ctx->stream>>>(static_cast<const A *>(q), static_cast<const C *>(k_cache),
                                                             static_cast<const C *>(v_cache), args, sp);
      });
    }
    lc::launch_pdl(ctx, combine_kernel<A, D>, combine_grid, dim3(THREADS), 0, args, sp, static_cast<A *>(out));
  });
}

}  // namespace

lc_status lc_attn::attention_split(lc_ctx *ctx, lc_dtype act, const void *q, lc_dtype cache_dt, const void *k_cache,
                                   const void *v_cache, const Args &args, int head_dim, const SplitPlan &plan,
                                   void *workspace, void *out) {
  LC_REQUIRE(ctx, plan.n_splits <= MAX_SPLITS && int64_t(args.n_seqs) * args.max_q_len <= INT32_MAX &&
                      args.n_heads <= 65535,
             "lc_attention: split grid too large");
  float *acc = static_cast<float *>(workspace);
  const int64_t rows = int64_t(plan.n_splits) * args.n_tokens * args.n_heads;
  const Split sp{plan.n_splits, plan.chunk, acc, reinterpret_cast<float2 *>(acc + rows * head_dim)};
  if (head_dim == 64)
    launch<64>(act, cache_dt, ctx, q, k_cache, v_cache, args, sp, out);
  else
    launch<128>(act, cache_dt, ctx, q, k_cache, v_cache, args, sp, out);
  return lc::launched(ctx, "lc_attention");
}
