// Segmented LoRA (SGMV): shrink x @ A^T into a rank-wide fp32 buffer, expand it through B^T into y,
// for up to LC_LORA_MAX_MODULES projections sharing one input in one launch each (q|k|v, gate|up).
//
// Both kernels give each segment its own blocks: grid (segment, token tile of SEG_TILE tokens within it,
// rank rows / output columns). A block reads its slice of the adapter's weights once and applies it to
// every token of its tile, so a decode segment (up to SEG_TILE tokens on one adapter) reads A and B
// once per step. The grid comes from host shapes only (graph-capturable): token tiles past a
// segment's end, rank rows past the slot's rank, base-model and rank-0 segments exit at once, so a
// rank-8 slot costs rank-8 work whatever max_rank is. Decode-sized launches (up to SMALL_MAX_TOKENS
// tokens) take the per-token kernels below instead.
#include "common.cuh"

namespace {

constexpr int SEG_TILE = 64;  // tokens of one segment per block
constexpr int TG = 16;        // tokens a thread accumulates at once (registers)

struct Segments {
  const int32_t *indptr, *slot;
  int n_segs, n_slots, max_rank;
  int64_t n_tokens;
};

// The launch's projections by value (kernel parameters); col_block[m] is module m's first block of
// output columns in the expand grid (col_block[n] the total).
struct Modules {
  lc_lora_module m[LC_LORA_MAX_MODULES];
  int n;
  int col_block[LC_LORA_MAX_MODULES + 1];
};

// mods.m[m] by unrolled selects: indexing the parameter array with a runtime m copies it to local memory.
__device__ __forceinline__ lc_lora_module module_at(const Modules &mods, int m) {
  lc_lora_module out = mods.m[0];
#pragma unroll
  for (int i = 1; i < LC_LORA_MAX_MODULES; ++i)
    if (i == m) out = mods.m[i];
  return out;
}

// Rows [a, b) of one segment, its slot and rank; skip where there is nothing to do.
struct Piece {
  int64_t a, b;
  int slot, rank;
  bool skip;
};

// Block (0, 0, 0) checks the segment list once per launch, a segment per thread (no serial walk).
__device__ void check_segments(const Segments &sg, int *err) {
  if (blockIdx.x != 0 || blockIdx.y != 0 || blockIdx.z != 0) return;
  bool ok = threadIdx.x != 0 || (sg.indptr[0] >= 0 && sg.indptr[sg.n_segs] <= sg.n_tokens);
  for (int g = threadIdx.x; ok && g < sg.n_segs; g += blockDim.x)
    ok = sg.indptr[g] <= sg.indptr[g + 1] && sg.slot[g] < sg.n_slots;
  if (!ok) lc::report(err, LC_DEV_LORA_SEGMENT);
}

// The block's piece: token tile blockIdx.y of segment blockIdx.x, for a module with these tables.
__device__ Piece piece_of(const Segments &sg, const int32_t *ranks, const void *const *mats, int *err) {
  const int g = blockIdx.x;
  const int64_t seg_a = sg.indptr[g], seg_b = sg.indptr[g + 1], t0 = seg_a + int64_t(blockIdx.y) * SEG_TILE;
  Piece p{max(t0, int64_t(0)), min(min(t0 + SEG_TILE, seg_b), sg.n_tokens), sg.slot[g], 0, true};
  if (p.slot < 0 || p.a >= p.b) return p;  // base model, or past the segment's end
  const bool ok_slot = p.slot < sg.n_slots;
  p.rank = ok_slot ? ranks[p.slot] : 0;
  if (!ok_slot || p.rank < 0 || p.rank > sg.max_rank || (p.rank > 0 && !mats[p.slot])) {
    if (threadIdx.x == 0) lc::report(err, LC_DEV_LORA_SEGMENT);
    return p;
  }
  p.skip = p.rank == 0;
  return p;
}

// Eight consecutive values from p (left: how many exist); VEC: one 16- or 32-byte aligned load.
template <bool VEC, typename T> __device__ __forceinline__ void load8(const T *p, int64_t left, float (&out)[8]) {
  if constexpr (VEC && sizeof(T) == 2) {
    const uint4 v = *reinterpret_cast<const uint4 *>(p);
    const T *e = reinterpret_cast<const T *>(&v);
#pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = lc::to_f(e[i]);
  } else if constexpr (VEC) {
    const float4 u = reinterpret_cast<const float4 *>(p)[0], v = reinterpret_cast<const float4 *>(p)[1];
    out[0] = u.x, out[1] = u.y, out[2] = u.z, out[3] = u.w, out[4] = v.x, out[5] = v.y, out[6] = v.z, out[7] = v.w;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = i < left ? lc::to_f(p[i]) : 0.0f;
  }
}

constexpr int SHRINK_THREADS = 256, SHRINK_WARPS = SHRINK_THREADS / 32, KC = SHRINK_THREADS * 8;

// The shrink of one piece for rank rows [j0, j0 + rows) (rows <= RJ) into tmp (row stride `width`):
// thread i owns columns [8i, 8i + 8) of every KC-wide chunk; the block sums the threads' partial dots
// per (token, row).
template <bool VEC, int RJ, typename A, typename W>
__device__ void shrink_piece(const A *x, int64_t in_dim, const W *amat, const Piece &p, int j0, int rows,
                             int64_t width, float *tmp, float (&red)[SHRINK_WARPS][TG * RJ]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n = int(p.b - p.a);
  for (int t0 = 0; t0 < n; t0 += TG) {
    float acc[TG][RJ] = {};
    for (int64_t c = int64_t(threadIdx.x) * 8; c < in_dim; c += KC) {
      float av[RJ][8];
#pragma unroll
      for (int jj = 0; jj < RJ; ++jj) {
        if (jj < rows) {
          load8<VEC>(amat + (j0 + jj) * in_dim + c, in_dim - c, av[jj]);
        } else {
#pragma unroll
          for (int i = 0; i < 8; ++i) av[jj][i] = 0.0f;
        }
      }
#pragma unroll
      for (int tt = 0; tt < TG; ++tt) {
        if (t0 + tt >= n) break;
        float xv[8];
        load8<VEC>(x + (p.a + t0 + tt) * in_dim + c, in_dim - c, xv);
#pragma unroll
        for (int jj = 0; jj < RJ; ++jj)
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[tt][jj] += xv[i] * av[jj][i];
      }
    }
#pragma unroll
    for (int tt = 0; tt < TG; ++tt) {
      if (t0 + tt >= n) break;  // uniform across the block: a decode piece reduces one token, not TG
#pragma unroll
      for (int jj = 0; jj < RJ; ++jj) {
        const float v = lc::warp_sum(acc[tt][jj]);
        if (lane == 0) red[warp][tt * RJ + jj] = v;
      }
    }
    __syncthreads();
    if (threadIdx.x < TG * RJ) {
      const int tt = threadIdx.x / RJ, jj = threadIdx.x % RJ;
      float v = 0.0f;
#pragma unroll
      for (int w = 0; w < SHRINK_WARPS; ++w) v += red[w][threadIdx.x];
      if (t0 + tt < n && jj < rows) tmp[(p.a + t0 + tt) * width + j0 + jj] = v;
    }
    __syncthreads();  // red is reused by the next token group
  }
}

// tmp[t, m * max_rank + j] = x[t, :] . A_m[s][j, :]   for t in segment g, s = seg_slot[g], j < ranks_m[s]
// Block (segment, token tile, z): module m = z / rank_blocks, rank rows [RJ j, RJ j + RJ) for j = z % rank_blocks.
template <int RJ, typename A, typename W>
__global__ void __launch_bounds__(SHRINK_THREADS) shrink_kernel(const A *x, int64_t in_dim, bool x_vec, Modules mods,
                                                                int rank_blocks, Segments sg, float *tmp, int *err) {
  __shared__ float red[SHRINK_WARPS][TG * RJ];
  check_segments(sg, err);
  const int m = blockIdx.z / rank_blocks, j0 = (blockIdx.z % rank_blocks) * RJ;
  const lc_lora_module mod = module_at(mods, m);
  const Piece p = piece_of(sg, mod.ranks, mod.a_ptrs, err);
  if (p.skip || j0 >= p.rank) return;  // uniform across the block
  const W *amat = static_cast<const W *>(mod.a_ptrs[p.slot]);
  const int rows = min(RJ, p.rank - j0);
  const int64_t width = int64_t(mods.n) * sg.max_rank;
  float *out = tmp + int64_t(m) * sg.max_rank;
  if (x_vec && reinterpret_cast<uintptr_t>(amat) % 16 == 0)
    shrink_piece<true, RJ>(x, in_dim, amat, p, j0, rows, width, out, red);
  else
    shrink_piece<false, RJ>(x, in_dim, amat, p, j0, rows, width, out, red);
}

constexpr int EXPAND_TO = 128, JC = 64;  // output columns per block (one per thread), rank chunk

// For module m (columns c = out_offset + o of y), with u = tmp[t, m * max_rank + (0:r)]:
// y[t, c] += scales[s] * u . B[s][o, :]      or, with DoRA magnitudes g = dora_mag[s]:
// y[t, c]  = g[o] * (y[t, c] + scales[s] * u . B[s][o, :])
// Block (segment, token tile, z): module m owns z in [col_block[m], col_block[m+1]), 128 of its output
// columns each. B[o0:o0+128, 0:r] is staged in shared memory once (per token group only where
// r > JC), then applied to the tile's tokens TG at a time.
template <typename A, typename W>
__global__ void __launch_bounds__(EXPAND_TO) expand_kernel(const float *tmp, Modules mods, Segments sg,
                                                           int64_t y_width, A *y, int *err) {
  __shared__ float bs[EXPAND_TO][JC + 1];  // +1: thread o reads row o, conflict-free
  __shared__ float ts[TG][JC];
  check_segments(sg, err);
  int m = 0;
  while (m + 1 < mods.n && int(blockIdx.z) >= mods.col_block[m + 1]) ++m;
  const lc_lora_module mod = module_at(mods, m);
  const Piece p = piece_of(sg, mod.ranks, mod.b_ptrs, err);
  if (p.skip) return;  // uniform across the block
  const W *bmat = static_cast<const W *>(mod.b_ptrs[p.slot]);
  const int n = int(p.b - p.a), r = p.rank;
  const int64_t out_dim = mod.out_dim, width = int64_t(mods.n) * sg.max_rank;
  const int64_t o0 = int64_t(blockIdx.z - mods.col_block[m]) * EXPAND_TO, o = o0 + threadIdx.x;
  tmp += int64_t(m) * sg.max_rank;
  // B[o0:o0+128, c0:c0+rc] into bs: thread i stages row o0 + i. Where rows are whole 16-byte vectors
  // (r % VE == 0, B aligned), all of a thread's loads are issued before the first is used: one memory
  // latency per stage instead of one per element.
  constexpr int VE = 16 / sizeof(W);
  const bool vec_b = r % VE == 0 && reinterpret_cast<uintptr_t>(bmat) % 16 == 0;
  auto stage_b = [&](int c0) {
    const int rc = min(JC, r - c0);
    const int64_t row = o0 + threadIdx.x;
    const bool live = row < out_dim;
    if (vec_b) {
      uint4 v[JC / VE];
#pragma unroll
      for (int k = 0; k < JC / VE; ++k)
        if (live && k * VE < rc) v[k] = *reinterpret_cast<const uint4 *>(bmat + row * r + c0 + k * VE);
#pragma unroll
      for (int k = 0; k < JC / VE; ++k) {
        if (k * VE >= rc) break;
        const W *e = reinterpret_cast<const W *>(&v[k]);
#pragma unroll
        for (int i = 0; i < VE; ++i) bs[threadIdx.x][k * VE + i] = live ? lc::to_f(e[i]) : 0.0f;
      }
    } else {
      for (int cc = 0; cc < rc; ++cc) bs[threadIdx.x][cc] = live ? lc::to_f(bmat[row * r + c0 + cc]) : 0.0f;
    }
  };
  const bool resident = r <= JC;
  if (resident) stage_b(0);
  for (int t0 = 0; t0 < n; t0 += TG) {
    float acc[TG] = {};
    for (int c0 = 0; c0 < r; c0 += JC) {
      const int rc = min(JC, r - c0);
      __syncthreads();  // the previous group's ts (and bs) consumed
      if (!resident) stage_b(c0);
      for (int e = threadIdx.x; e < TG * JC; e += EXPAND_TO) {
        const int tt = e / JC, cc = e % JC;
        ts[tt][cc] = (t0 + tt < n && cc < rc) ? tmp[(p.a + t0 + tt) * width + c0 + cc] : 0.0f;
      }
      __syncthreads();
      for (int cc = 0; cc < rc; ++cc) {
        const float bv = bs[threadIdx.x][cc];
#pragma unroll
        for (int tt = 0; tt < TG; ++tt)
          if (t0 + tt < n) acc[tt] += ts[tt][cc] * bv;  // uniform: a decode piece does one token's FMAs
      }
    }
    if (o >= out_dim) continue;
    const float scale = mod.scales[p.slot];
    const float *mag = mod.dora_mag ? mod.dora_mag[p.slot] : nullptr;
#pragma unroll
    for (int tt = 0; tt < TG; ++tt) {
      if (t0 + tt >= n) break;
      A *yp = y + (p.a + t0 + tt) * y_width + mod.out_offset + o;
      const float v = lc::to_f(*yp) + scale * acc[tt];
      *yp = lc::from_f<A>(mag ? mag[o] * v : v);
    }
  }
}

// ---------- decode-sized launches (n_tokens <= SMALL_MAX_TOKENS): a block per token, warps over rows ----------
// A decode batch has a token or a few per adapter. The kernels above stage weights in shared memory
// per 64-token tile and held few blocks per SM; these give each token its own blocks (BGMV, as
// Punica), find the token's segment with one warp-wide search, and compute whole rows per warp with
// up to SU 16-byte loads per lane in flight and no shared memory or barrier. Tokens that share an
// adapter re-read its rows, mostly from L2.
// Before lc::pdl_wait they read only what no kernel of the step writes (the segment tables, uploaded
// ahead of the step's kernels; the slot tables and adapter weights, written between steps), so the
// table lookups (and expand's first weight loads) overlap the kernel before; x, tmp, y and err wait.
constexpr int64_t SMALL_MAX_TOKENS = 128;
constexpr int SMALL_WARPS = 4, SMALL_THREADS = SMALL_WARPS * 32, SU = 8;

struct TokenSlot {
  int slot, rank;
  bool skip, bad;  // skip: base model, no segment, rank 0 or a bad entry; bad: report it (after the wait)
};

// Token t's slot and rank in one module. Reads only.
__device__ TokenSlot token_slot(const Segments &sg, int64_t t, const int32_t *ranks, const void *const *mats) {
  const int lane = threadIdx.x & 31;
  int slot = -1;
  for (int g0 = 0; g0 < sg.n_segs; g0 += 32) {  // segments are ordered: at most one holds t
    const int g = g0 + lane;
    const bool in = g < sg.n_segs;
    // each lane loads its segment's slot with its bounds: one round trip fewer before the weights
    const int lo = in ? sg.indptr[g] : 0, hi = in ? sg.indptr[g + 1] : 0, s = in ? sg.slot[g] : -1;
    const unsigned hit = __ballot_sync(~0u, in && lo <= t && t < hi);
    if (hit) {  // uniform across the warp
      slot = __shfl_sync(~0u, s, __ffs(int(hit)) - 1);
      break;
    }
  }
  TokenSlot ts{slot, 0, true, false};
  if (ts.slot < 0) return ts;
  const bool ok_slot = ts.slot < sg.n_slots;
  ts.rank = ok_slot ? ranks[ts.slot] : 0;
  ts.bad = !ok_slot || ts.rank < 0 || ts.rank > sg.max_rank || (ts.rank > 0 && !mats[ts.slot]);
  ts.skip = ts.bad || ts.rank == 0;
  return ts;
}

// The wait, then the checks that write err: every block waits (lc::launch_pdl).
__device__ __forceinline__ void wait_and_check(const Segments &sg, const TokenSlot &ts, int *err) {
  lc::pdl_wait();
  check_segments(sg, err);
  if (ts.bad && threadIdx.x == 0) lc::report(err, LC_DEV_LORA_SEGMENT);
}

// Loads 16-byte vectors v0 + 32u (u < SU, v0 + 32u < n_vec) of p into a.
__device__ __forceinline__ void load_pass(const uint4 *p, int64_t v0, int64_t n_vec, uint4 (&a)[SU]) {
#pragma unroll
  for (int u = 0; u < SU; ++u)
    if (v0 + 32 * u < n_vec) a[u] = p[v0 + 32 * u];
}

// x_row . a_row over in_dim, summed across the warp. VEC: both rows 16-byte aligned, in_dim % 8 == 0
// (taken for 2-byte types, eight values a vector). x comes from L1 / L2: the block's warps share it.
template <bool VEC, typename A, typename W>
__device__ float warp_dot(const A *x_row, const W *a_row, int64_t in_dim) {
  const int lane = threadIdx.x & 31;
  float acc = 0.0f;
  if constexpr (VEC && sizeof(A) == 2 && sizeof(W) == 2) {
    const uint4 *xv = reinterpret_cast<const uint4 *>(x_row), *av = reinterpret_cast<const uint4 *>(a_row);
    const int64_t n_vec = in_dim / 8;
    for (int64_t v0 = lane; v0 < n_vec; v0 += 32 * SU) {
      uint4 a[SU], b[SU];
#pragma unroll
      for (int u = 0; u < SU; ++u)
        if (v0 + 32 * u < n_vec) a[u] = av[v0 + 32 * u], b[u] = xv[v0 + 32 * u];
#pragma unroll
      for (int u = 0; u < SU; ++u) {
        if (v0 + 32 * u >= n_vec) break;
        float fa[8], fb[8];
        lc::unpack8<W>(a[u], fa);
        lc::unpack8<A>(b[u], fb);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc += fa[i] * fb[i];
      }
    }
  } else {
    for (int64_t c = lane; c < in_dim; c += 32) acc += lc::to_f(x_row[c]) * lc::to_f(a_row[c]);
  }
  return lc::warp_sum(acc);
}

// tmp[t, m * max_rank + j] = x[t, :] . A_m[slot(t)][j, :]: block (t, module m x rank-row block), a row per warp,
// A's and x's SU vectors in flight per lane. (Staging x in shared memory for 8 blocks an SM instead of 5 ran
// 4-10% slower on the H200, run 7.)
template <typename A, typename W>
__global__ void __launch_bounds__(SMALL_THREADS) shrink_small_kernel(const A *x, int64_t in_dim, bool x_vec,
                                                                     Modules mods, int rank_blocks, Segments sg,
                                                                     float *tmp, int *err) {
  lc::pdl_trigger();  // see lc::launch_pdl
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.x;
  const int m = blockIdx.y / rank_blocks, j = (blockIdx.y % rank_blocks) * SMALL_WARPS + warp;
  const lc_lora_module mod = module_at(mods, m);
  const TokenSlot ts = token_slot(sg, t, mod.ranks, mod.a_ptrs);
  wait_and_check(sg, ts, err);
  if (ts.skip || j >= ts.rank) return;  // uniform across the warp
  const W *a_row = static_cast<const W *>(mod.a_ptrs[ts.slot]) + int64_t(j) * in_dim;
  const A *x_row = x + t * in_dim;
  const float v = x_vec && lc::aligned16(a_row) ? warp_dot<true>(x_row, a_row, in_dim) : warp_dot<false>(x_row, a_row, in_dim);
  if (lane == 0) tmp[t * (int64_t(mods.n) * sg.max_rank) + int64_t(m) * sg.max_rank + j] = v;
}

// y[t, out_offset + o] += scale * u . B[slot(t)][o, :] (DoRA: times mag[o]) for u = tmp[t, m * max_rank + (0:r)]:
// block (t, column block z of module m), warp w rows o0 + 32w + (0:32). Where r = 8C with C a power of two
// up to 32 and B is 16-byte aligned (2-byte weights), the warp's 32 rows are 32C contiguous vectors: lane l loads
// vectors l + 32k (row (l + 32k) / C, rank chunk l % C), coalesced, the first SU before the wait; a row's C lanes
// sum by xor shuffles and one more shuffle hands row i's sum to lane i, so the warp updates its 32 values of y in
// one coalesced read-modify-write (a store per row made each warp wait on C serial round trips).
// Other ranks: a row per lane, scalar.
template <typename A, typename W>
__global__ void __launch_bounds__(SMALL_THREADS, 8) expand_small_kernel(const float *tmp, Modules mods, Segments sg,
                                                                     int64_t y_width, A *y, int *err) {
  lc::pdl_trigger();  // see lc::launch_pdl
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.x;
  int m = 0;
  while (m + 1 < mods.n && int(blockIdx.y) >= mods.col_block[m + 1]) ++m;
  const lc_lora_module mod = module_at(mods, m);
  const TokenSlot ts = token_slot(sg, t, mod.ranks, mod.b_ptrs);
  const int64_t out_dim = mod.out_dim, w0 = int64_t(blockIdx.y - mods.col_block[m]) * EXPAND_TO + warp * 32;
  const bool idle = ts.skip || w0 >= out_dim;  // uniform across the warp
  const W *bmat = idle ? nullptr : static_cast<const W *>(mod.b_ptrs[ts.slot]);
  const int r = ts.rank, C = r / 8, P = 32 / max(C, 1);  // P: rows per 32 vectors
  const bool fast = sizeof(W) == 2 && !idle && r % 8 == 0 && C <= 32 && (C & (C - 1)) == 0 && lc::aligned16(bmat);
  const uint4 *bv = fast ? reinterpret_cast<const uint4 *>(bmat + w0 * r) : nullptr;
  const int64_t n_vec = min(int64_t(32), out_dim - w0) * C;  // the warp's rows' vectors
  uint4 b[SU] = {};  // vectors past the warp's rows stay zero
  if (fast) load_pass(bv, lane, n_vec, b);
  wait_and_check(sg, ts, err);
  if (idle) return;
  const float *u = tmp + t * (int64_t(mods.n) * sg.max_rank) + int64_t(m) * sg.max_rank;
  float dot = 0.0f;  // lane l: row w0 + l
  if constexpr (sizeof(W) == 2) {
    if (fast) {
      const int chunk = lane % C;
      float uv[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) uv[i] = u[chunk * 8 + i];
      for (int k0 = 0; k0 < C; k0 += SU) {  // C = 32: four passes of SU
        if (k0 > 0) load_pass(bv, lane + 32 * k0, n_vec, b);
#pragma unroll
        for (int k = 0; k < SU; ++k) {
          if (k0 + k >= C) break;  // uniform
          float fb[8], part = 0.0f;
          lc::unpack8<W>(b[k], fb);
#pragma unroll
          for (int i = 0; i < 8; ++i) part += uv[i] * fb[i];
          for (int off = C / 2; off >= 1; off >>= 1) part += __shfl_xor_sync(~0u, part, off);
          // vectors 32(k0 + k) + (0:32) hold rows P(k0 + k) + (0:P); row l's sum sits in lanes (l % P) C + (0:C)
          const float row_sum = __shfl_sync(~0u, part, (lane % P) * C);
          if (lane / P == k0 + k) dot = row_sum;
        }
      }
    }
  }
  const int64_t o = w0 + lane;
  if (o >= out_dim) return;
  if (!fast)
    for (int j = 0; j < r; ++j) dot += u[j] * lc::to_f(bmat[o * r + j]);
  A *yp = y + t * y_width + mod.out_offset + o;
  const float v = lc::to_f(*yp) + mod.scales[ts.slot] * dot;
  const float *mag = mod.dora_mag ? mod.dora_mag[ts.slot] : nullptr;  // per slot: NULL where not DoRA
  *yp = lc::from_f<A>(mag ? mag[o] * v : v);
}

lc_status check_common(lc_ctx *ctx, const char *op, const lc_lora_module *mods, int32_t n_mods,
                       const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs, int32_t n_slots,
                       int32_t max_rank, int64_t n_tokens) {
  LC_REQUIRE(ctx, mods && n_mods >= 1 && n_mods <= LC_LORA_MAX_MODULES, "%s: %d modules (1 to %d)", op, n_mods,
             LC_LORA_MAX_MODULES);
  for (int32_t m = 0; m < n_mods; ++m) LC_REQUIRE(ctx, mods[m].ranks, "%s: module %d has no ranks", op, m);
  LC_REQUIRE(ctx, seg_indptr && seg_slot && n_segs >= 0 && n_slots >= 0 && max_rank >= 0 && n_tokens >= 0,
             "%s: bad segment arguments", op);
  LC_REQUIRE(ctx, (n_tokens + SEG_TILE - 1) / SEG_TILE <= 65535, "%s: too many tokens", op);
  return LC_OK;
}

Modules modules_of(const lc_lora_module *mods, int32_t n_mods) {
  Modules ms{};
  ms.n = n_mods;
  for (int32_t m = 0; m < n_mods; ++m) {
    ms.m[m] = mods[m];
    ms.col_block[m + 1] = ms.col_block[m] + int(lc::blocks_for(mods[m].out_dim, EXPAND_TO));
  }
  return ms;
}

}  // namespace

extern "C" lc_status lc_lora_shrink(lc_ctx *ctx, lc_dtype act, const void *x, int64_t in_dim, lc_dtype wt,
                                    const lc_lora_module *mods, int32_t n_mods, int32_t n_slots,
                                    const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs,
                                    int64_t n_tokens, int32_t max_rank, float *tmp) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, x && tmp && in_dim > 0, "lc_lora_shrink: bad argument");
  lc_status st = check_common(ctx, "lc_lora_shrink", mods, n_mods, seg_indptr, seg_slot, n_segs, n_slots, max_rank,
                              n_tokens);
  if (st != LC_OK) return st;
  for (int32_t m = 0; m < n_mods; ++m) LC_REQUIRE(ctx, mods[m].a_ptrs, "lc_lora_shrink: module %d has no A table", m);
  if (n_tokens == 0 || n_segs == 0 || max_rank == 0) return LC_OK;
  const Segments sg{seg_indptr, seg_slot, n_segs, n_slots, max_rank, n_tokens};
  const bool x_vec = in_dim % 8 == 0 && lc::aligned16(x);
  const Modules ms = modules_of(mods, n_mods);
  if (n_tokens <= SMALL_MAX_TOKENS) {
    const unsigned rank_blocks = lc::blocks_for(max_rank, SMALL_WARPS);
    const dim3 grid(unsigned(n_tokens), rank_blocks * unsigned(n_mods));
    lc_dispatch(act, [&](auto at) {
      lc_dispatch(wt, [&](auto wtag) {
        using A = decltype(at);
        using W = decltype(wtag);
        lc::launch_pdl(ctx, shrink_small_kernel<A, W>, grid, dim3(SMALL_THREADS), 0, static_cast<const A *>(x), in_dim,
                       x_vec, ms, int(rank_blocks), sg, tmp, ctx->dev_error);
      });
    });
    return lc::launched(ctx, "lc_lora_shrink");
  }
  // Few (segment, rank row) pairs: one rank row per block (most blocks, x re-read from L2 per row).
  // Many tokens, or enough pairs to fill the GPU several times over (32 rank-64 adapters on q|k|v:
  // 6144 one-row blocks, mostly waiting on their loads): four rows per block, x read a quarter as often.
  const bool wide = n_tokens > 256 || int64_t(n_segs) * n_mods * max_rank >= 2048;
  const int rj = wide ? 4 : 1;
  const unsigned rank_blocks = lc::blocks_for(max_rank, rj);
  const dim3 grid(unsigned(n_segs), lc::blocks_for(n_tokens, SEG_TILE), rank_blocks * unsigned(n_mods));
  lc_dispatch(act, [&](auto at) {
    lc_dispatch(wt, [&](auto wtag) {
      using A = decltype(at);
      using W = decltype(wtag);
      if (wide)
        shrink_kernel<4, A, W><<<grid, SHRINK_THREADS, 0, ctx->stream>>>(
            static_cast<const A *>(x), in_dim, x_vec, ms, int(rank_blocks), sg, tmp, ctx->dev_error);
      else
        shrink_kernel<1, A, W><<<grid, SHRINK_THREADS, 0, ctx->stream>>>(
            static_cast<const A *>(x), in_dim, x_vec, ms, int(rank_blocks), sg, tmp, ctx->dev_error);
    });
  });
  return lc::launched(ctx, "lc_lora_shrink");
}

extern "C" lc_status lc_lora_expand(lc_ctx *ctx, lc_dtype act, const float *tmp, int32_t max_rank, lc_dtype wt,
                                    const lc_lora_module *mods, int32_t n_mods, int32_t n_slots,
                                    const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs,
                                    int64_t n_tokens, int64_t y_width, void *y) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, wt);
  LC_REQUIRE(ctx, tmp && y && y_width > 0, "lc_lora_expand: bad argument");
  lc_status st = check_common(ctx, "lc_lora_expand", mods, n_mods, seg_indptr, seg_slot, n_segs, n_slots, max_rank,
                              n_tokens);
  if (st != LC_OK) return st;
  for (int32_t m = 0; m < n_mods; ++m)
    LC_REQUIRE(ctx, mods[m].b_ptrs && mods[m].scales && mods[m].out_dim > 0 && mods[m].out_offset >= 0 &&
                        mods[m].out_offset + mods[m].out_dim <= y_width,
               "lc_lora_expand: module %d: bad tables or columns [%lld, +%lld) of %lld", m,
               (long long)mods[m].out_offset, (long long)mods[m].out_dim, (long long)y_width);
  if (n_tokens == 0 || n_segs == 0 || max_rank == 0) return LC_OK;
  const Modules ms = modules_of(mods, n_mods);
  LC_REQUIRE(ctx, ms.col_block[n_mods] <= 65535, "lc_lora_expand: output columns too many");
  const Segments sg{seg_indptr, seg_slot, n_segs, n_slots, max_rank, n_tokens};
  const bool small = n_tokens <= SMALL_MAX_TOKENS;
  const dim3 grid = small ? dim3(unsigned(n_tokens), unsigned(ms.col_block[n_mods]))
                          : dim3(unsigned(n_segs), lc::blocks_for(n_tokens, SEG_TILE), unsigned(ms.col_block[n_mods]));
  lc_dispatch(act, [&](auto at) {
    lc_dispatch(wt, [&](auto wtag) {
      using A = decltype(at);
      using W = decltype(wtag);
      if (small)
        lc::launch_pdl(ctx, expand_small_kernel<A, W>, grid, dim3(SMALL_THREADS), 0, tmp, ms, sg, y_width,
                       static_cast<A *>(y), ctx->dev_error);
      else
        expand_kernel<A, W><<<grid, EXPAND_TO, 0, ctx->stream>>>(tmp, ms, sg, y_width, static_cast<A *>(y),
                                                               ctx->dev_error);
    });
  });
  return lc::launched(ctx, "lc_lora_expand");
}
