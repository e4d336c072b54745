// Segmented LoRA (SGMV): shrink x @ A^T into a rank-wide fp32 buffer, expand it through B^T into y.
//
// Both kernels tile the flat token range (grid from host shapes only); a token tile may meet several
// segments, and the block walks each (segment ∩ tile) piece with that segment's own slot and rank.
// A slot's rank bounds the work: shrink blocks whose rank tile starts at or past the rank exit, and
// expand loops over the slot's r columns only.
#include "common.cuh"

namespace {

constexpr int TM = 8;  // tokens per tile

struct Segments {
  const int32_t *indptr, *slot, *ranks;
  int n_segs, n_slots, max_rank;
  int64_t n_tokens;
};

// One piece of a token tile: rows [a, b) of segment g, or skip = true.
struct Piece {
  int64_t a, b;
  int slot, rank;
  bool skip;
};

// Block (0, 0) checks the segment list once per launch.
__device__ void check_segments(const Segments &sg, int *err) {
  if (blockIdx.x != 0 || blockIdx.y != 0 || threadIdx.x != 0) return;
  bool ok = sg.indptr[0] >= 0 && sg.indptr[sg.n_segs] <= sg.n_tokens;
  for (int g = 0; ok && g < sg.n_segs; ++g) ok = sg.indptr[g] <= sg.indptr[g + 1] && sg.slot[g] < sg.n_slots;
  if (!ok) lc::report(err, LC_DEV_LORA_SEGMENT);
}

// First segment whose rows end after t0 (segments are sorted and non-overlapping).
__device__ int first_segment(const Segments &sg, int64_t t0) {
  int lo = 0, hi = sg.n_segs;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (sg.indptr[mid + 1] <= t0) lo = mid + 1; else hi = mid;
  }
  return lo;
}

__device__ Piece piece_of(const Segments &sg, int g, int64_t t0, int64_t t1, const void *const *mats, int *err) {
  Piece p{max(int64_t(sg.indptr[g]), t0), min(int64_t(sg.indptr[g + 1]), t1), sg.slot[g], 0, true};
  p.a = max(p.a, int64_t(0));
  p.b = min(p.b, sg.n_tokens);
  if (p.slot < 0 || p.a >= p.b) return p;  // base model, or nothing of this tile
  const bool ok_slot = p.slot < sg.n_slots;
  p.rank = ok_slot ? sg.ranks[p.slot] : 0;
  if (!ok_slot || p.rank < 0 || p.rank > sg.max_rank || (p.rank > 0 && !mats[p.slot])) {
    if (threadIdx.x == 0) lc::report(err, LC_DEV_LORA_SEGMENT);
    return p;
  }
  p.skip = p.rank == 0;
  return p;
}

constexpr int SHRINK_WARPS = 8, SHRINK_ROWS_PER_WARP = 2, SHRINK_TR = SHRINK_WARPS * SHRINK_ROWS_PER_WARP, KC = 256;

// tmp[t, j] = x[t, :] . A[s][j, :]   for t in segment g, s = seg_slot[g], j < ranks[s]
// Block (token tile, rank tile of 16): warp w owns rank rows j0 + 2w, j0 + 2w + 1; x is staged 256 columns at a time.
template <typename A, typename W>
__global__ void __launch_bounds__(SHRINK_WARPS * 32) shrink_kernel(const A *x, int64_t in_dim, const void *const *a_ptrs,
                                                                   Segments sg, float *tmp, int *err) {
  __shared__ float xs[TM][KC];
  check_segments(sg, err);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t0 = int64_t(blockIdx.x) * TM, t1 = min(t0 + TM, sg.n_tokens);
  const int j0 = blockIdx.y * SHRINK_TR;
  for (int g = first_segment(sg, t0); g < sg.n_segs && sg.indptr[g] < t1; ++g) {
    const Piece p = piece_of(sg, g, t0, t1, a_ptrs, err);
    if (p.skip || j0 >= p.rank) continue;  // uniform across the block
    const W *amat = static_cast<const W *>(a_ptrs[p.slot]);
    const int rows = int(p.b - p.a);
    float acc[SHRINK_ROWS_PER_WARP][TM] = {};
    for (int64_t c0 = 0; c0 < in_dim; c0 += KC) {
      __syncthreads();  // previous chunk consumed
      for (int e = threadIdx.x; e < TM * KC; e += blockDim.x) {
        const int t = e / KC, c = e % KC;
        xs[t][c] = (t < rows && c0 + c < in_dim) ? lc::to_f(x[(p.a + t) * in_dim + c0 + c]) : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int jj = 0; jj < SHRINK_ROWS_PER_WARP; ++jj) {
        const int j = j0 + warp * SHRINK_ROWS_PER_WARP + jj;
        if (j >= p.rank) continue;
        const W *arow = amat + int64_t(j) * in_dim + c0;
        for (int c = lane; c < KC && c0 + c < in_dim; c += 32) {
          const float av = lc::to_f(arow[c]);
#pragma unroll
          for (int t = 0; t < TM; ++t) acc[jj][t] += av * xs[t][c];
        }
      }
    }
#pragma unroll
    for (int jj = 0; jj < SHRINK_ROWS_PER_WARP; ++jj) {
      const int j = j0 + warp * SHRINK_ROWS_PER_WARP + jj;
#pragma unroll
      for (int t = 0; t < TM; ++t) {
        const float v = lc::warp_sum(acc[jj][t]);
        if (lane == 0 && j < p.rank && t < rows) tmp[(p.a + t) * sg.max_rank + j] = v;
      }
    }
  }
}

constexpr int EXPAND_TO = 128, JC = 32;  // output columns per block (one per thread), rank chunk

// y[t, o] += scales[s] * tmp[t, 0:r] . B[s][o, :]      or, with DoRA magnitudes m = dora_mag[s]:
// y[t, o]  = m[o] * (y[t, o] + scales[s] * tmp[t, 0:r] . B[s][o, :])
template <typename A, typename W>
__global__ void __launch_bounds__(EXPAND_TO) expand_kernel(const float *tmp, const void *const *b_ptrs,
                                                           const float *scales, const float *const *dora_mag,
                                                           Segments sg, int64_t out_dim, A *y, int *err) {
  __shared__ float ts[TM][JC];
  __shared__ float bs[EXPAND_TO][JC + 1];  // +1: thread o reads row o, conflict-free
  check_segments(sg, err);
  const int64_t t0 = int64_t(blockIdx.x) * TM, t1 = min(t0 + TM, sg.n_tokens);
  const int64_t o0 = int64_t(blockIdx.y) * EXPAND_TO, o = o0 + threadIdx.x;
  for (int g = first_segment(sg, t0); g < sg.n_segs && sg.indptr[g] < t1; ++g) {
    const Piece p = piece_of(sg, g, t0, t1, b_ptrs, err);
    if (p.skip) continue;  // uniform across the block
    const W *bmat = static_cast<const W *>(b_ptrs[p.slot]);
    const int rows = int(p.b - p.a), r = p.rank;
    float acc[TM] = {};
    for (int c0 = 0; c0 < r; c0 += JC) {
      __syncthreads();  // previous chunk consumed
      for (int e = threadIdx.x; e < TM * JC; e += EXPAND_TO) {
        const int t = e / JC, c = e % JC;
        ts[t][c] = (t < rows && c0 + c < r) ? tmp[(p.a + t) * sg.max_rank + c0 + c] : 0.0f;
      }
      for (int e = threadIdx.x; e < EXPAND_TO * JC; e += EXPAND_TO) {
        const int ol = e / JC, c = e % JC;  // a warp reads 32 consecutive columns of one row of B
        bs[ol][c] = (o0 + ol < out_dim && c0 + c < r) ? lc::to_f(bmat[(o0 + ol) * r + c0 + c]) : 0.0f;
      }
      __syncthreads();
#pragma unroll 8
      for (int c = 0; c < JC; ++c) {
        const float bv = bs[threadIdx.x][c];
#pragma unroll
        for (int t = 0; t < TM; ++t) acc[t] += ts[t][c] * bv;
      }
    }
    if (o >= out_dim) continue;
    const float scale = scales[p.slot];
    const float *mag = dora_mag ? dora_mag[p.slot] : nullptr;
#pragma unroll
    for (int t = 0; t < TM; ++t) {
      if (t >= rows) break;
      A *yp = y + (p.a + t) * out_dim + o;
      const float v = lc::to_f(*yp) + scale * acc[t];
      *yp = lc::from_f<A>(mag ? mag[o] * v : v);
    }
  }
}

lc_status check_common(lc_ctx *ctx, const char *op, const int32_t *seg_indptr, const int32_t *seg_slot,
                       const int32_t *ranks, int32_t n_segs, int32_t n_slots, int32_t max_rank, int64_t n_tokens) {
  LC_REQUIRE(ctx, seg_indptr && seg_slot && ranks && n_segs >= 0 && n_slots >= 0 && max_rank >= 0 && n_tokens >= 0,
             "%s: bad segment arguments", op);
  LC_REQUIRE(ctx, (n_tokens + TM - 1) / TM <= INT32_MAX, "%s: too many tokens", op);
  return LC_OK;
}

}  // namespace

extern "C" lc_status lc_lora_shrink(lc_ctx *ctx, lc_dtype act, const void *x, int64_t in_dim, lc_dtype wt,
                                    const void *const *a_ptrs, const int32_t *ranks, int32_t n_slots,
                                    const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs,
                                    int64_t n_tokens, int32_t max_rank, float *tmp) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && a_ptrs && tmp && in_dim > 0, "lc_lora_shrink: bad argument");
  lc_status st = check_common(ctx, "lc_lora_shrink", seg_indptr, seg_slot, ranks, n_segs, n_slots, max_rank, n_tokens);
  if (st != LC_OK) return st;
  if (n_tokens == 0 || n_segs == 0 || max_rank == 0) return LC_OK;
  const Segments sg{seg_indptr, seg_slot, ranks, n_segs, n_slots, max_rank, n_tokens};
  const dim3 grid(lc::blocks_for(n_tokens, TM), lc::blocks_for(max_rank, SHRINK_TR));
  lc_dispatch(act, [&](auto at) {
    lc_dispatch(wt, [&](auto wtag) {
      using A = decltype(at);
      using W = decltype(wtag);
      shrink_kernel<A, W><<<grid, SHRINK_WARPS * 32, 0, ctx->stream>>>(static_cast<const A *>(x), in_dim, a_ptrs, sg,
                                                                        tmp, ctx->dev_error);
    });
  });
  return lc::launched(ctx, "lc_lora_shrink");
}

extern "C" lc_status lc_lora_expand(lc_ctx *ctx, lc_dtype act, const float *tmp, int32_t max_rank, lc_dtype wt,
                                    const void *const *b_ptrs, const int32_t *ranks, const float *scales,
                                    const float *const *dora_mag, int32_t n_slots, const int32_t *seg_indptr,
                                    const int32_t *seg_slot, int32_t n_segs, int64_t n_tokens, int64_t out_dim,
                                    void *y) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, tmp && b_ptrs && scales && y && out_dim > 0, "lc_lora_expand: bad argument");
  lc_status st = check_common(ctx, "lc_lora_expand", seg_indptr, seg_slot, ranks, n_segs, n_slots, max_rank, n_tokens);
  if (st != LC_OK) return st;
  LC_REQUIRE(ctx, (out_dim + EXPAND_TO - 1) / EXPAND_TO <= 65535, "lc_lora_expand: out_dim %lld too large",
             (long long)out_dim);
  if (n_tokens == 0 || n_segs == 0 || max_rank == 0) return LC_OK;
  const Segments sg{seg_indptr, seg_slot, ranks, n_segs, n_slots, max_rank, n_tokens};
  const dim3 grid(lc::blocks_for(n_tokens, TM), lc::blocks_for(out_dim, EXPAND_TO));
  lc_dispatch(act, [&](auto at) {
    lc_dispatch(wt, [&](auto wtag) {
      using A = decltype(at);
      using W = decltype(wtag);
      expand_kernel<A, W><<<grid, EXPAND_TO, 0, ctx->stream>>>(tmp, b_ptrs, scales, dora_mag, sg, out_dim,
                                                               static_cast<A *>(y), ctx->dev_error);
    });
  });
  return lc::launched(ctx, "lc_lora_expand");
}
