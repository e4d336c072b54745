// Tensor-core attention for prefill rows (f16/bf16 activations and caches): flash attention with wmma.
//
// Block (sequence s, tile of 64 flat rows f = j * group + head-within-group, kv head): the unsplit
// kernel's rows, 4x taller, so the rows of a GQA group share each K/V tile; 4 warps of 16 rows. The
// block walks its rows' key window in tiles of 64 keys, gathered through the block table with 16-byte
// loads into shared memory as the activation type (converted there if the cache dtype differs). Per
// tile, each warp (skipping tiles that hold no key of its rows):
//   S = Q K^T       wmma 16x16x16 fp32-accumulated, stored fp32 to its shared S rows;
//   softmax         fp32, two lanes per row: running max m and sum l; causal, window and invalid-slot
//                   masks as attention.cu; P = exp(S - m) rounded to the activation type (as FlashAttention;
//                   l sums the rounded values) over its S rows;
//   O = a O + P V   O stays in accumulator fragments in registers. Their element order is unspecified, so
//                   each thread learns the row of each of its elements once, by loading a tile of row
//                   indices, and scales element i by a[row(i)] = exp(m_old - m_new) read from shared.
// At the end O / l goes out through the S rows with 16-byte stores.
// Dynamic shared memory: Q, K, V [64][D+8] act, S [4 warps][16][68] fp32, 69 KB at head_dim 128
// (three blocks per Hopper SM, registers capped to match). Per 64x64 tile at head_dim 128 a warp issues
// 64 mma (32 for S, 32 for P V) and reads 48 KB of shared memory (K and V fragments 32 KB): shared-memory
// bandwidth, not the tensor cores, bounds it. One flat grid, last row tile first (the causal diagonal
// makes it the longest); it depends on host arguments only (graph-capturable).
#include <mma.h>

#include <type_traits>

#include "attention.cuh"

namespace {

using namespace nvcuda;
using lc_attn::Args;
constexpr int WARPS = 4, THREADS = WARPS * 32, BM = lc_attn::PREFILL_ROWS, BN = 64;
static_assert(BM == WARPS * 16, "one 16-row wmma tile per warp");
constexpr int SLD = BN + 4;  // S row stride (floats): rows start 4 banks apart
constexpr int PLD = BN + 8;  // P row stride (elements): a multiple of 16 bytes, rows 4 banks apart
constexpr float LOG2E = 1.4426950408889634f;
// Hopper holds three blocks per SM in shared memory (3 x 69 KB): cap registers at 168 for them (no
// spills, see ptxas -v). Ampere fits two (any register count), Ada one.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr int MIN_BLOCKS = 3;
#else
constexpr int MIN_BLOCKS = 1;
#endif
using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
constexpr int NE = Acc::num_elements;

template <int D> struct Smem {
  static constexpr int LD = D + 8;  // Q, K, V row stride (elements): rows start 4 banks apart
  static constexpr int QKV = BM * LD * 2, S = WARPS * 16 * SLD * 4;
  static constexpr int Q_OFF = 0, K_OFF = QKV, V_OFF = 2 * QKV, S_OFF = 3 * QKV, A_OFF = S_OFF + S,
                       MASK_OFF = A_OFF + WARPS * 16 * 4, SLOT_OFF = MASK_OFF + 16, BYTES = SLOT_OFF + BN * 8;
  static_assert(BM == BN, "Q, K and V tiles share one shape");
  static_assert(16 * PLD * 2 <= 16 * SLD * 4, "a warp's P rows fit in its S rows");
  static_assert(QKV % 128 == 0 && S % 128 == 0, "wmma tiles stay 256-bit aligned");
};

using lc_attn::first_key;

// 8 cache elements (16 bytes) -> 8 activation elements at dst.
template <typename A, typename C> __device__ __forceinline__ void put(A *dst, const uint4 &raw) {
  constexpr int VEC = 16 / sizeof(C);
  if constexpr (std::is_same<A, C>::value) {
    *reinterpret_cast<uint4 *>(dst) = raw;
  } else {
    static_assert(VEC == 8, "2-byte cache dtypes only");
    const C *src = reinterpret_cast<const C *>(&raw);
    alignas(16) A tmp[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) tmp[e] = lc::from_f<A>(lc::to_f(src[e]));
    *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(tmp);
  }
}

template <typename A> struct alignas(4) Pair {
  A lo, hi;
};

// Sequence s owns query rows [q_indptr[s], q_indptr[s+1]); query j sits at p = context_lens[s] - n_q + j and
//   out[t, h] = sum_i softmax_i(scale * q[t, h] . K[i, h / group]) V[i, h / group]   over i in (p - window, p],
// key i read from slot block_tables[s * max_blocks_per_seq + i / bs] * bs + i % bs (as attention.cu).
template <typename A, typename C, int D>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    prefill_kernel(const A *q, const C *k_cache, const C *v_cache, Args a, A *out) {
  using L = Smem<D>;
  constexpr int LD = L::LD, KD = D / 16, NF = BN / 16;
  constexpr int VPR = D / 8, VPT = BN * VPR / THREADS, BATCH = VPT < 4 ? VPT : 4;  // 16-byte vectors
  static_assert(sizeof(C) == 2 && VPT % BATCH == 0, "tile must split evenly into 16-byte vectors");
  extern __shared__ __align__(128) uint8_t smem[];
  A *qs = reinterpret_cast<A *>(smem + L::Q_OFF), *ks = reinterpret_cast<A *>(smem + L::K_OFF),
    *vs = reinterpret_cast<A *>(smem + L::V_OFF);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float *ss = reinterpret_cast<float *>(smem + L::S_OFF) + warp * 16 * SLD;  // this warp's S rows
  A *ps = reinterpret_cast<A *>(ss);  // this warp's P rows [16][PLD], over its S rows once these are read
  float *scale_s = reinterpret_cast<float *>(smem + L::A_OFF) + warp * 16;    // this warp's exp(m_old - m_new)
  unsigned *slot_ok = reinterpret_cast<unsigned *>(smem + L::MASK_OFF);      // bit k: key k0 + k has a slot
  int64_t *slots = reinterpret_cast<int64_t *>(smem + L::SLOT_OFF);

  const int group = a.n_heads / a.n_kv_heads;
  const int kvh = blockIdx.x % a.n_kv_heads, rest = blockIdx.x / a.n_kv_heads;
  const int tile = a.row_tiles - 1 - rest % a.row_tiles, s = rest / a.row_tiles;
  if (blockIdx.x == 0 && threadIdx.x == 0 && (a.q_indptr[0] != 0 || a.q_indptr[a.n_seqs] != a.n_tokens))
    lc::report(a.err, LC_DEV_ATTN_SHAPE);

  const int begin = a.q_indptr[s], n_q = a.q_indptr[s + 1] - begin, ctx_len = a.context_lens[s];
  if (!lc_attn::sequence_ok(a, begin, n_q, ctx_len)) {
    if (threadIdx.x == 0) lc::report(a.err, LC_DEV_ATTN_SHAPE);
    return;
  }
  const int f0 = tile * BM, n_rows = n_q * group;  // flat rows f < n_rows exist
  if (f0 >= n_rows) return;  // this tile lies past the sequence's queries
  const int key_lo = first_key(a, ctx_len - n_q + f0 / group);
  const int key_hi = ctx_len - n_q + min(n_rows - 1, f0 + BM - 1) / group;
  const int64_t q_width = int64_t(a.n_heads) * D, kv_width = int64_t(a.n_kv_heads) * D;
  auto row_offset = [&](int f) { return (begin + f / group) * q_width + int64_t(kvh * group + f % group) * D; };

  // Q tile (zeros past n_rows), read by the first loop iteration after its barriers.
  for (int e = threadIdx.x; e < BM * VPR; e += THREADS) {
    const int r = e / VPR, part = e % VPR, f = f0 + r;
    const uint4 v =
        f < n_rows ? *reinterpret_cast<const uint4 *>(q + row_offset(f) + part * 8) : make_uint4(0, 0, 0, 0);
    *reinterpret_cast<uint4 *>(qs + r * LD + part * 8) = v;
  }
  const A *qw = qs + warp * 16 * LD;  // this warp's Q rows

  // row_of[i]: the tile row of accumulator element i (the same for every accumulator fragment).
  int row_of[NE];
  {
    for (int e = lane; e < 256; e += 32) ss[(e / 16) * SLD + e % 16] = float(e / 16);
    __syncwarp();
    Acc rows;
    wmma::load_matrix_sync(rows, ss, SLD, wmma::mem_row_major);
#pragma unroll
    for (int i = 0; i < NE; ++i) row_of[i] = int(rows.x[i]);
  }
  Acc of[KD];
#pragma unroll
  for (int kd = 0; kd < KD; ++kd) wmma::fill_fragment(of[kd], 0.0f);

  // Softmax lanes: lane (r, half) owns row r and, of each 4 columns, the pair 2 * cq, 2 * cq + 1 (cq flips
  // for rows 8-15 so that a half-warp's 8-byte reads cover all 32 banks).
  const int r = lane & 15, half = lane >> 4, cq = half ^ (r >> 3);
  const int f = f0 + warp * 16 + r;
  const bool row_valid = f < n_rows;
  const int row_last = row_valid ? ctx_len - n_q + f / group : -1, row_first = row_valid ? first_key(a, row_last) : 0;
  float m = -INFINITY, l = 0.0f;
  // this warp's rows and their keys (uniform across the warp)
  const int wf = f0 + warp * 16, wf_last = min(n_rows - 1, wf + 15);
  const bool warp_live = wf < n_rows;
  const int w_lo = warp_live ? first_key(a, ctx_len - n_q + wf / group) : 0;
  const int w_hi = warp_live ? ctx_len - n_q + wf_last / group : -1;
  const float scale_log2 = a.scale * LOG2E;
  const int32_t *table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;

  for (int k0 = key_lo; k0 <= key_hi; k0 += BN) {
    __syncthreads();  // the previous tile is consumed
    if (threadIdx.x < BN) {  // warps 0 and 1: one key each
      const int i = k0 + threadIdx.x;
      const int64_t slot = i <= key_hi ? lc_attn::key_slot(a, table, i) : -1;
      slots[threadIdx.x] = slot;
      const unsigned ok = __ballot_sync(0xffffffffu, slot >= 0);
      if (lane == 0) slot_ok[warp] = ok;
    }
    __syncthreads();
#pragma unroll
    for (int u0 = 0; u0 < VPT; u0 += BATCH) {  // BATCH vectors of K and of V in flight per thread
      uint4 kr[BATCH], vr[BATCH];
#pragma unroll
      for (int u = 0; u < BATCH; ++u) {
        const int e = threadIdx.x + (u0 + u) * THREADS, kk = e / VPR, part = e % VPR;
        const int64_t slot = slots[kk], off = slot * kv_width + int64_t(kvh) * D + part * 8;
        kr[u] = slot >= 0 ? *reinterpret_cast<const uint4 *>(k_cache + off) : make_uint4(0, 0, 0, 0);
        vr[u] = slot >= 0 ? *reinterpret_cast<const uint4 *>(v_cache + off) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < BATCH; ++u) {
        const int e = threadIdx.x + (u0 + u) * THREADS, kk = e / VPR, part = e % VPR;
        put<A, C>(ks + kk * LD + part * 8, kr[u]);
        put<A, C>(vs + kk * LD + part * 8, vr[u]);
      }
    }
    __syncthreads();
    if (!warp_live || k0 > w_hi || k0 + BN - 1 < w_lo) continue;  // no key of this tile for this warp's rows

    // S = Q K^T, 16 x 64 per warp. The dimension loop stays rolled: unrolled, the compiler would hoist
    // every fragment load of the tile into registers.
    {
      Acc sf[NF];
#pragma unroll
      for (int nf = 0; nf < NF; ++nf) wmma::fill_fragment(sf[nf], 0.0f);
#pragma unroll 1
      for (int kd = 0; kd < KD; ++kd) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, A, wmma::row_major> qf;
        wmma::load_matrix_sync(qf, qw + kd * 16, LD);
#pragma unroll
        for (int nf = 0; nf < NF; ++nf) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, A, wmma::col_major> kf;  // K^T: (dim k, key n) at ks[n][k]
          wmma::load_matrix_sync(kf, ks + nf * 16 * LD + kd * 16, LD);
          wmma::mma_sync(sf[nf], qf, kf, sf[nf]);
        }
      }
#pragma unroll
      for (int nf = 0; nf < NF; ++nf) wmma::store_matrix_sync(ss + nf * 16, sf[nf], SLD, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of row r over this lane's 32 columns.
    const uint64_t ok = slot_ok[0] | uint64_t(slot_ok[1]) << 32;
    const int lo = row_first - k0, hi = row_last - k0;  // live columns: [lo, hi] with a slot
    float sv[32];
    float tile_max = -INFINITY;
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      const int c = 4 * k + 2 * cq;
      const float2 v = *reinterpret_cast<const float2 *>(ss + r * SLD + c);
      const bool live0 = c >= lo && c <= hi && (ok >> c & 1), live1 = c + 1 >= lo && c + 1 <= hi && (ok >> (c + 1) & 1);
      sv[2 * k] = live0 ? v.x * scale_log2 : -INFINITY;
      sv[2 * k + 1] = live1 ? v.y * scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, fmaxf(sv[2 * k], sv[2 * k + 1]));
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 16));
    const float m_new = fmaxf(m, tile_max);
    // no live key so far (m_new = -inf): P = 0 and O (still zero) keeps its scale
    const float m_ref = m_new == -INFINITY ? 0.0f : m_new;
    const float rescale = m_new == -INFINITY ? 1.0f : exp2f(m - m_new);  // 0 while m is -inf
    float sum = 0.0f;
    __syncwarp();  // every lane has read its S values: P may overwrite them
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      const A p0 = lc::from_f<A>(exp2f(sv[2 * k] - m_ref)), p1 = lc::from_f<A>(exp2f(sv[2 * k + 1] - m_ref));
      sum += lc::to_f(p0) + lc::to_f(p1);
      *reinterpret_cast<Pair<A> *>(ps + r * PLD + 4 * k + 2 * cq) = Pair<A>{p0, p1};
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 16);
    l = l * rescale + sum;
    m = m_new;
    if (half == 0) scale_s[r] = rescale;
    __syncwarp();

    // O = O * rescale(row) + P V
    float sc[NE];
#pragma unroll
    for (int i = 0; i < NE; ++i) sc[i] = scale_s[row_of[i]];
#pragma unroll
    for (int kd = 0; kd < KD; ++kd)
#pragma unroll
      for (int i = 0; i < NE; ++i) of[kd].x[i] *= sc[i];
#pragma unroll 1
    for (int kk = 0; kk < NF; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, A, wmma::row_major> pf;
      wmma::load_matrix_sync(pf, ps + kk * 16, PLD);
#pragma unroll
      for (int nd = 0; nd < KD; ++nd) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, A, wmma::row_major> vf;
        wmma::load_matrix_sync(vf, vs + kk * 16 * LD + nd * 16, LD);
        wmma::mma_sync(of[nd], pf, vf, of[nd]);
      }
    }
  }
  if (!warp_live) return;

  // out = O / l, 64 columns at a time through this warp's S rows; lane (r, half) writes 32 of row r.
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // l == 0 only if every key was skipped as invalid
  A *o = out + (row_valid ? row_offset(f) : 0);
#pragma unroll
  for (int c0 = 0; c0 < D; c0 += BN) {
    __syncwarp();  // earlier reads of the S rows are done
#pragma unroll
    for (int nf = 0; nf < NF; ++nf) wmma::store_matrix_sync(ss + nf * 16, of[c0 / 16 + nf], SLD, wmma::mem_row_major);
    __syncwarp();
    if (row_valid) {
#pragma unroll
      for (int v = 0; v < 4; ++v) {
        const int c = half * 32 + v * 8;
        alignas(16) A tmp[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) tmp[e] = lc::from_f<A>(ss[r * SLD + c + e] * inv);
        *reinterpret_cast<uint4 *>(o + c0 + c) = *reinterpret_cast<const uint4 *>(tmp);
      }
    }
  }
}

template <typename A, typename C, int D>
cudaError_t launch(unsigned blocks, cudaStream_t stream, const void *q, const void *k_cache, const void *v_cache,
                   const Args &args, void *out) {
  auto kernel = prefill_kernel<A, C, D>;
  const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Smem<D>::BYTES);
  if (err != cudaSuccess) return err;
  kernel<<<blocks, THREADS, Smem<D>::BYTES, stream>>>(static_cast<const A *>(q), static_cast<const C *>(k_cache),
                                                       static_cast<const C *>(v_cache), args, static_cast<A *>(out));
  return cudaSuccess;
}

template <int D>
cudaError_t launch(lc_dtype act, lc_dtype cache_dt, unsigned blocks, cudaStream_t stream, const void *q,
                   const void *k_cache, const void *v_cache, const Args &args, void *out) {
  if (act == LC_F16)
    return cache_dt == LC_F16 ? launch<__half, __half, D>(blocks, stream, q, k_cache, v_cache, args, out)
                              : launch<__half, __nv_bfloat16, D>(blocks, stream, q, k_cache, v_cache, args, out);
  return cache_dt == LC_F16 ? launch<__nv_bfloat16, __half, D>(blocks, stream, q, k_cache, v_cache, args, out)
                            : launch<__nv_bfloat16, __nv_bfloat16, D>(blocks, stream, q, k_cache, v_cache, args, out);
}

}  // namespace

int64_t lc_attn::prefill_blocks(const Args &args) {
  const int64_t group = args.n_heads / args.n_kv_heads;
  return (int64_t(args.max_q_len) * group + PREFILL_ROWS - 1) / PREFILL_ROWS * args.n_seqs * args.n_kv_heads;
}

lc_status lc_attn::attention_prefill(lc_ctx *ctx, lc_dtype act, const void *q, lc_dtype cache_dt, const void *k_cache,
                                     const void *v_cache, const Args &args, int head_dim, void *out) {
  LC_REQUIRE(ctx, (act == LC_F16 || act == LC_BF16) && (cache_dt == LC_F16 || cache_dt == LC_BF16),
             "lc_attention: the prefill kernel takes f16/bf16 activations and caches");
  const int64_t blocks = prefill_blocks(args);
  LC_REQUIRE(ctx, blocks <= INT32_MAX, "lc_attention: prefill grid too large");
  Args pa = args;
  pa.row_tiles = int(blocks / (int64_t(args.n_seqs) * args.n_kv_heads));
  const cudaError_t err = head_dim == 64
                              ? launch<64>(act, cache_dt, unsigned(blocks), ctx->stream, q, k_cache, v_cache, pa, out)
                              : launch<128>(act, cache_dt, unsigned(blocks), ctx->stream, q, k_cache, v_cache, pa, out);
  if (err != cudaSuccess)
    return lc::fail(ctx, LC_ERR_BACKEND, "lc_attention: cudaFuncSetAttribute failed: %s (%d)", cudaGetErrorString(err),
                    int(err));
  return lc::launched(ctx, "lc_attention");
}
