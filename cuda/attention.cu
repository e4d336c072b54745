// Ragged paged attention (prefill and decode in one batch), online softmax in fp32.
//
// Block (sequence s, row tile, kv head): a row is one (query token j, query head of this kv head's
// group); 16 rows per block, 4 per warp. The block walks the union of its rows' key windows in
// tiles of 32 keys staged in shared memory (read through the block table once for all 16 rows);
// lane k scores key k of the tile, then every lane accumulates its head_dim/32 output dimensions.
// The grid depends on host arguments only (n_seqs, max_q_len, n_kv_heads): graph-capturable.
// With a workspace large enough, lc_attention takes the split path instead (attention_split.cu); pure
// decode steps (max_q_len 1), attention_decode.cu; prefill-sized f16/bf16 batches, the tensor-core
// kernel (attention_prefill.cu).
#include "attention.cuh"

namespace {

using lc_attn::Args;
using lc_attn::ROWS;
constexpr int WARPS = 4, THREADS = WARPS * 32, ROWS_PER_WARP = ROWS / WARPS, BK = 32;
static_assert(WARPS == lc_attn::QueryRows<64>::WARPS, "QueryRows lays rows out over these warps");

// Sequence s owns query rows [q_indptr[s], q_indptr[s+1]); query j sits at p = context_lens[s] - n_q + j and
//   out[t, h] = sum_i softmax_i(scale * q[t, h] . K[i, h / group]) V[i, h / group]   over i in (p - window, p],
// key i read from slot block_tables[s * max_blocks_per_seq + i / bs] * bs + i % bs.
template <typename A, typename C, int D>
__global__ void __launch_bounds__(THREADS) attention_kernel(const A *q, const C *k_cache, const C *v_cache, Args a,
                                                             A *out) {
  constexpr int PER_LANE = D / 32;  // output dims per lane: lane + 32 * c
  __shared__ float qs[ROWS][D];
  __shared__ float ks[BK][D + 1];  // +1: lane k reads row k, conflict-free
  __shared__ float vs[BK][D];
  __shared__ int64_t slots[BK];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int s = blockIdx.x / a.row_tiles, tile = blockIdx.x % a.row_tiles, kvh = blockIdx.y;
  const int group = a.n_heads / a.n_kv_heads;
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 &&
      (a.q_indptr[0] != 0 || a.q_indptr[a.n_seqs] != a.n_tokens))
    lc::report(a.err, LC_DEV_ATTN_SHAPE);

  const int begin = a.q_indptr[s], n_q = a.q_indptr[s + 1] - begin, ctx_len = a.context_lens[s];
  if (!lc_attn::sequence_ok(a, begin, n_q, ctx_len)) {
    if (threadIdx.x == 0) lc::report(a.err, LC_DEV_ATTN_SHAPE);
    return;
  }
  const int f0 = tile * ROWS;  // flat row index f = j * group + (head within group)
  if (f0 / group >= n_q) return;  // this tile lies past the sequence's queries
  const int j_last = min(n_q - 1, (f0 + ROWS - 1) / group);
  auto first_key = [&](int p) { return lc_attn::first_key(a, p); };
  const int key_lo = first_key(ctx_len - n_q + f0 / group), key_hi = ctx_len - n_q + j_last;
  const int64_t q_width = int64_t(a.n_heads) * D, kv_width = int64_t(a.n_kv_heads) * D;

  lc_attn::QueryRows<D> rows;  // the 16 query rows in qs, this warp's softmax state
  rows.load(qs, q, a, begin, n_q, ctx_len, f0, kvh, group, warp);
  const int32_t *table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;

  for (int k0 = key_lo; k0 <= key_hi; k0 += BK) {
    __syncthreads();  // the previous tile (and, first time, qs) is complete / consumed
    if (threadIdx.x < BK) {
      const int i = k0 + threadIdx.x;
      const int64_t slot = i <= key_hi ? lc_attn::key_slot(a, table, i) : -1;
      slots[threadIdx.x] = slot;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < BK * D; e += THREADS) {
      const int kk = e / D, d = e % D;
      const int64_t slot = slots[kk];
      const int64_t off = slot * kv_width + int64_t(kvh) * D + d;
      ks[kk][d] = slot >= 0 ? lc::to_f(k_cache[off]) : 0.0f;
      vs[kk][d] = slot >= 0 ? lc::to_f(v_cache[off]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; ++rr) {
      if (!rows.valid[rr]) continue;  // uniform across the warp
      const int r = warp + WARPS * rr, i = k0 + lane;
      const bool live = i >= rows.first[rr] && i <= rows.last[rr] && slots[lane] >= 0;
      lc_attn::softmax_tile(qs[r], ks, vs, lane, live, a.scale, rows.m[rr], rows.l[rr], rows.acc[rr]);
    }
  }
#pragma unroll
  for (int rr = 0; rr < ROWS_PER_WARP; ++rr) {
    if (!rows.valid[rr]) continue;
    const int f = f0 + warp + WARPS * rr, j = f / group, h = kvh * group + f % group;
    const float inv = rows.l[rr] > 0.0f ? 1.0f / rows.l[rr] : 0.0f;  // l == 0 only if every key was skipped as invalid
    A *o = out + (begin + j) * q_width + int64_t(h) * D;
#pragma unroll
    for (int c = 0; c < PER_LANE; ++c) o[lane + 32 * c] = lc::from_f<A>(rows.acc[rr][c] * inv);
  }
}

template <int D>
void launch(lc_dtype act, lc_dtype cache_dt, dim3 grid, cudaStream_t stream, const void *q, const void *k_cache,
            const void *v_cache, const Args &args, void *out) {
  lc_dispatch(act, [&](auto at) {
    lc_dispatch(cache_dt, [&](auto ct) {
      using A = decltype(at);
      using C = decltype(ct);
      attention_kernel<A, C, D><<<grid, THREADS, 0, stream>>>(static_cast<const A *>(q), static_cast<const C *>(k_cache),
                                                               static_cast<const C *>(v_cache), args,
                                                               static_cast<A *>(out));
    });
  });
}

}  // namespace

extern "C" lc_status lc_attention(lc_ctx *ctx, lc_dtype act, const void *q, lc_dtype cache_dt, const void *k_cache,
                                  const void *v_cache, int64_t cache_slots, const int32_t *q_indptr,
                                  const int32_t *context_lens, const int32_t *block_tables, int32_t max_blocks_per_seq,
                                  int32_t n_seqs, int64_t n_tokens, int32_t max_q_len, int32_t max_context_len,
                                  int32_t block_size, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                                  int32_t sliding_window, float scale, void *workspace, uint64_t workspace_bytes,
                                  void *out) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE_DTYPE(ctx, cache_dt);
  LC_REQUIRE(ctx, q && k_cache && v_cache && q_indptr && context_lens && block_tables && out,
             "lc_attention: NULL pointer");
  LC_REQUIRE(ctx, n_seqs >= 0 && block_size > 0 && head_dim > 0 && n_heads > 0 && n_kv_heads > 0 &&
                      n_heads % n_kv_heads == 0 && max_q_len >= 0 && max_context_len >= max_q_len &&
                      max_blocks_per_seq >= 0 && n_tokens >= 0 && cache_slots >= 0,
             "lc_attention: bad shape");
  if (head_dim != 64 && head_dim != 128)
    return lc::fail(ctx, LC_ERR_UNSUPPORTED, "lc_attention: head_dim %d (this build has 64 and 128)", head_dim);
  if (n_seqs == 0 || n_tokens == 0 || max_q_len == 0) return LC_OK;
  const int64_t group = n_heads / n_kv_heads;
  const int64_t row_tiles = (int64_t(max_q_len) * group + ROWS - 1) / ROWS;
  LC_REQUIRE(ctx, row_tiles * n_seqs <= INT32_MAX && n_kv_heads <= 65535, "lc_attention: grid too large");
  Args args{q_indptr, context_lens, block_tables, cache_slots, n_tokens, max_blocks_per_seq, n_seqs, max_q_len,
            max_context_len, block_size, n_heads, n_kv_heads, sliding_window, int(row_tiles), scale, ctx->dev_error};
  const lc_attn::SplitPlan plan =
      lc_attn::split_plan(n_tokens, n_seqs, max_q_len, max_context_len, n_heads, head_dim);
  // the split path moves K/V in 16-byte vectors and reads the workspace as float4
  const bool aligned = (reinterpret_cast<uintptr_t>(k_cache) | reinterpret_cast<uintptr_t>(v_cache) |
                        reinterpret_cast<uintptr_t>(workspace)) % 16 == 0;
  if (plan.n_splits > 1 && workspace && workspace_bytes >= plan.bytes && aligned)
    return lc_attn::attention_split(ctx, act, q, cache_dt, k_cache, v_cache, args, head_dim, plan, workspace, out);
  if (max_q_len == 1 && lc_attn::decode_supported(act, cache_dt, head_dim, int(group), q, k_cache, v_cache)) {
    const lc_attn::Split whole{1, max_context_len, nullptr, nullptr};  // one chunk, written straight to out
    lc_attn::attention_decode(act, cache_dt, ctx, q, k_cache, v_cache, args, head_dim, whole, out);
    return lc::launched(ctx, "lc_attention");
  }
  // Tensor cores (attention_prefill.cu) once a sequence may have more rows (queries x group) than one
  // 16-row tile of this kernel: with fewer (decode-sized steps), three of its four 16-row warps would idle.
  const bool halves = (act == LC_F16 || act == LC_BF16) && (cache_dt == LC_F16 || cache_dt == LC_BF16);
  const bool aligned16 = (reinterpret_cast<uintptr_t>(q) | reinterpret_cast<uintptr_t>(out) |
                          reinterpret_cast<uintptr_t>(k_cache) | reinterpret_cast<uintptr_t>(v_cache)) % 16 == 0;
  if (halves && aligned16 && int64_t(max_q_len) * group > ROWS && lc_attn::prefill_blocks(args) <= INT32_MAX)
    return lc_attn::attention_prefill(ctx, act, q, cache_dt, k_cache, v_cache, args, head_dim, out);
  const dim3 grid(unsigned(row_tiles * n_seqs), unsigned(n_kv_heads));
  if (head_dim == 64)
    launch<64>(act, cache_dt, grid, ctx->stream, q, k_cache, v_cache, args, out);
  else
    launch<128>(act, cache_dt, grid, ctx->stream, q, k_cache, v_cache, args, out);
  return lc::launched(ctx, "lc_attention");
}

extern "C" uint64_t lc_attention_workspace_bytes(int64_t n_tokens, int32_t n_seqs, int32_t max_q_len,
                                                 int32_t max_context_len, int32_t n_heads, int32_t head_dim) {
  return lc_attn::split_plan(n_tokens, n_seqs, max_q_len, max_context_len, n_heads, head_dim).bytes;
}
