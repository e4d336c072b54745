// Shared by the attention paths (attention.cu unsplit, attention_split.cu flash-decoding,
// attention_prefill.cu tensor cores).
#pragma once
#include <algorithm>

#include "common.cuh"

namespace lc_attn {

// Host arguments and metadata pointers of one lc_attention call (see loracuda.h).
struct Args {
  const int32_t *q_indptr, *context_lens, *block_tables;
  int64_t cache_slots, n_tokens;
  int max_blocks_per_seq, n_seqs, max_q_len, max_context_len, block_size, n_heads, n_kv_heads, window, row_tiles;
  float scale;
  int *err;
};

// Query rows of one block (both paths): flat row f = j * group + (head within the kv head's group).
constexpr int ROWS = 16;

// One tile of 32 keys (staged in shared memory as fp32) folded into one query row's online softmax,
// called by the whole warp (both paths): lane k scores key k (live: it counts for this row), then
//   m' = max(m, tile max),  l' = l exp(m - m') + sum_k exp(score_k - m'),
//   acc' = acc exp(m - m') + sum_k exp(score_k - m') V[k]   (this lane's dims lane + 32 * c).
// A tile with no live key leaves the row as it was.
template <int D, int BK>
__device__ __forceinline__ void softmax_tile(const float (&q)[D], const float (&ks)[BK][D + 1], const float (&vs)[BK][D],
                                             int lane, bool live, float scale, float &m, float &l,
                                             float (&acc)[D / 32]) {
  static_assert(BK == 32, "one key per lane");
  constexpr int PER_LANE = D / 32;
  float score = -INFINITY;
  if (live) {
    float p0 = 0.0f, p1 = 0.0f, p2 = 0.0f, p3 = 0.0f;
#pragma unroll
    for (int d = 0; d < D; d += 4) {
      p0 += q[d] * ks[lane][d];
      p1 += q[d + 1] * ks[lane][d + 1];
      p2 += q[d + 2] * ks[lane][d + 2];
      p3 += q[d + 3] * ks[lane][d + 3];
    }
    score = ((p0 + p1) + (p2 + p3)) * scale;
  }
  const float tile_max = lc::warp_max(score);
  if (tile_max == -INFINITY) return;  // no live key of this tile for this row (uniform)
  const float m_new = fmaxf(m, tile_max);
  const float correction = expf(m - m_new);  // 0 while m is still -inf
  const float p = live ? expf(score - m_new) : 0.0f;
  l = l * correction + lc::warp_sum(p);
  m = m_new;
#pragma unroll
  for (int c = 0; c < PER_LANE; ++c) acc[c] *= correction;
#pragma unroll 8
  for (int kk = 0; kk < BK; ++kk) {
    const float pk = __shfl_sync(0xffffffffu, p, kk);
#pragma unroll
    for (int c = 0; c < PER_LANE; ++c) acc[c] += pk * vs[kk][lane + 32 * c];
  }
}

// How the split path cuts key ranges: chunk c of every sequence covers keys [c * chunk, (c+1) * chunk).
// A function of host bounds only, so a graph recorded for these bounds replays for any contents.
struct SplitPlan {
  int n_splits = 0, chunk = 0;
  uint64_t bytes = 0;  // workspace: partial acc [n_splits][n_tokens][n_heads][head_dim] f32, then (max, sum) float2
};

// Splits when few queries meet long contexts: aims at TARGET (query head, chunk) pairs, chunks of at
// least MIN_CHUNK keys and at most MAX_SPLITS of them. Batches with more than MAX_Q queries in a
// sequence have parallelism enough (and would need a large workspace): they run unsplit.
inline SplitPlan split_plan(int64_t n_tokens, int32_t n_seqs, int32_t max_q_len, int32_t max_context_len,
                            int32_t n_heads, int32_t head_dim) {
  constexpr int64_t TARGET = 8192, MIN_CHUNK = 64, MAX_SPLITS = 256, MAX_Q = 64, KEY_TILE = 32;
  SplitPlan plan;
  if ((head_dim != 64 && head_dim != 128) || n_tokens <= 0 || n_seqs <= 0 || n_heads <= 0 || max_q_len <= 0 ||
      max_q_len > MAX_Q || max_context_len <= MIN_CHUNK)
    return plan;
  const int64_t units = int64_t(n_seqs) * n_heads * ((max_q_len + ROWS - 1) / ROWS);
  const int64_t want = (TARGET + units - 1) / units;
  if (want <= 1) return plan;
  auto round_up = [](int64_t v, int64_t m) { return (v + m - 1) / m * m; };
  int64_t chunk = round_up((max_context_len + want - 1) / want, KEY_TILE);
  chunk = std::max(chunk, MIN_CHUNK);
  chunk = std::max(chunk, round_up((max_context_len + MAX_SPLITS - 1) / MAX_SPLITS, KEY_TILE));
  const int64_t n_splits = (max_context_len + chunk - 1) / chunk;
  if (n_splits <= 1) return plan;
  plan.n_splits = int(n_splits);
  plan.chunk = int(chunk);
  plan.bytes = uint64_t(n_splits) * uint64_t(n_tokens) * uint64_t(n_heads) * uint64_t(head_dim + 2) * 4;
  return plan;
}

// Partial results of a split: chunk c of every sequence covers keys [c * chunk, (c+1) * chunk).
struct Split {
  int n_splits, chunk;
  float *acc;  // [n_splits][n_tokens][n_heads][D]
  float2 *ml;  // [n_splits][n_tokens][n_heads]: (running max, sum of exp)
};

// The first key a query at position p sees (sliding window, or 0).
__device__ __forceinline__ int first_key(const Args &a, int p) { return a.window > 0 ? max(0, p - a.window + 1) : 0; }

// Cache slot of key i through a sequence's block table row, or -1 (and a device error) for an entry
// outside the cache.
__device__ __forceinline__ int64_t key_slot(const Args &a, const int32_t *table, int i) {
  const int64_t slot = int64_t(table[i / a.block_size]) * a.block_size + i % a.block_size;
  if (slot >= 0 && slot < a.cache_slots) return slot;
  lc::report(a.err, LC_DEV_ATTN_SLOT);
  return -1;
}

// The metadata checks every path makes; false (and a device error from the caller) for an
// out-of-contract sequence.
__device__ __forceinline__ bool sequence_ok(const Args &a, int begin, int n_q, int ctx_len) {
  return !(n_q < 0 || n_q > a.max_q_len || ctx_len < n_q || ctx_len > a.max_context_len || begin < 0 ||
           int64_t(begin) + n_q > a.n_tokens ||
           (int64_t(ctx_len) + a.block_size - 1) / a.block_size > a.max_blocks_per_seq);
}

// The 16 query rows of a block (flat rows f0 + r, r < ROWS, of one sequence and kv head) as fp32 in
// shared memory (zeros past the sequence's queries), and the online-softmax state of the rows a warp
// owns (r = warp + 4 * rr), as the unsplit and split kernels (4 warps) keep them.
template <int D> struct QueryRows {
  static constexpr int WARPS = 4, PER_WARP = ROWS / WARPS, PER_LANE = D / 32;
  bool valid[PER_WARP];
  int first[PER_WARP], last[PER_WARP];  // the row's key window
  float m[PER_WARP], l[PER_WARP], acc[PER_WARP][PER_LANE];

  // Stages the block's query rows (all threads; a barrier must follow before qs is read) and sets up
  // this warp's rows: query j = f / group sits at position context_len - n_q + j.
  template <typename A>
  __device__ __forceinline__ void load(float (&qs)[ROWS][D], const A *q, const Args &a, int begin, int n_q,
                                        int ctx_len, int f0, int kvh, int group, int warp) {
    const int64_t q_width = int64_t(a.n_heads) * D;
    for (int e = threadIdx.x; e < ROWS * D; e += WARPS * 32) {
      const int r = e / D, d = e % D, f = f0 + r, j = f / group;
      qs[r][d] = j < n_q ? lc::to_f(q[(begin + j) * q_width + int64_t(kvh * group + f % group) * D + d]) : 0.0f;
    }
#pragma unroll
    for (int rr = 0; rr < PER_WARP; ++rr) {
      const int j = (f0 + warp + WARPS * rr) / group;
      valid[rr] = j < n_q;
      last[rr] = ctx_len - n_q + j;
      first[rr] = first_key(a, last[rr]);
      m[rr] = -INFINITY;
      l[rr] = 0.0f;
#pragma unroll
      for (int c = 0; c < PER_LANE; ++c) acc[rr][c] = 0.0f;
    }
  }
};

// The decode path (attention_decode.cu): one query per sequence (max_q_len == 1), K/V read straight
// into registers. With sp.n_splits > 1 it writes chunk partials for the split path's combine;
// otherwise (sp.acc NULL, one chunk) the normalised output. decode_supported says which calls it takes.
bool decode_supported(lc_dtype act, lc_dtype cache_dt, int head_dim, int group, const void *q, const void *k_cache,
                      const void *v_cache);
void attention_decode(lc_dtype act, lc_dtype cache_dt, const lc_ctx *ctx, const void *q, const void *k_cache,
                      const void *v_cache, const Args &args, int head_dim, const Split &sp, void *out);

// The tensor-core prefill path (attention_prefill.cu): blocks of PREFILL_ROWS flat rows, f16/bf16
// activations and caches, q / out / caches 16-byte aligned. Its grid: prefill_blocks(args) blocks.
constexpr int PREFILL_ROWS = 64;
int64_t prefill_blocks(const Args &args);
lc_status attention_prefill(lc_ctx *ctx, lc_dtype act, const void *q, lc_dtype cache_dt, const void *k_cache,
                            const void *v_cache, const Args &args, int head_dim, void *out);

// The split path (attention_split.cu): partial softmax per chunk into the workspace, then a combine.
lc_status attention_split(lc_ctx *ctx, lc_dtype act, const void *q, lc_dtype cache_dt, const void *k_cache,
                          const void *v_cache, const Args &args, int head_dim, const SplitPlan &plan,
                          void *workspace, void *out);

}  // namespace lc_attn
