/*
 * loracuda.h — the native ABI of lora-serve.
 *
 * Two libraries implement this header: libloracuda.so (CUDA kernels + cuBLAS) and libloracpu.so
 * (plain C++, the reference and the CPU backend). TypeScript binds it through bun:ffi
 * (src/native/ffi.ts mirrors it one-to-one).
 *
 * Conventions
 * - Every call returns lc_status; on failure lc_last_error(ctx) holds a message (owned by the
 *   context, valid until the next call on it). The library never prints, exits or aborts.
 * - "Device pointers" come from lc_alloc (on the CPU backend they are host pointers). Ops take
 *   device pointers, sizes and dtypes, and are enqueued in order on the context's stream; only
 *   lc_download and lc_sync wait for them.
 * - Activations are `act` (LC_F32 on the CPU; LC_F16/LC_BF16 on the GPU); weights are `wt`; all
 *   arithmetic accumulates in fp32.
 * - Row-major everywhere. A linear weight W is [out, in] as in PyTorch: y = x @ W^T.
 * - Ownership: the caller owns every buffer it passes; lc_alloc'd (and lc_host_alloc'd) memory is
 *   freed with lc_free (lc_host_free) or with the context. Ops keep no pointer after they return
 *   (CUDA: after they complete).
 * - Shapes and capacities are host arguments; per-token metadata (ids, positions, slots, block
 *   tables, segments) lives in device buffers so a step can be replayed with new contents.
 * - Checks: host arguments are checked at the call. Device-side metadata (token ids, slots, block
 *   tables, segments) is checked at the call by the CPU twin; the CUDA kernels cannot read it
 *   without a sync, so they skip a bad entry, and the next lc_sync / lc_download returns
 *   LC_ERR_INVALID_ARGUMENT with the message. Callers validate metadata before it reaches an op.
 * - CUDA limits the twin lacks (LC_ERR_UNSUPPORTED beyond them): attention head_dim 64 or 128,
 *   lc_sample n_top <= 256; lc_linear with act != wt takes a slow fallback kernel.
 */
#ifndef LORACUDA_H
#define LORACUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LC_ABI_VERSION 6

typedef struct lc_ctx lc_ctx; /* opaque: device, stream, BLAS handle, scratch */

typedef enum {
  LC_OK = 0,
  LC_ERR_INVALID_ARGUMENT = 1, /* a shape, dtype, pointer or index is out of contract */
  LC_ERR_NO_DEVICE = 2,        /* no usable GPU / driver */
  LC_ERR_OUT_OF_MEMORY = 3,
  LC_ERR_UNSUPPORTED = 4,      /* valid request this build cannot do (dtype, head_dim, ...) */
  LC_ERR_BACKEND = 5           /* CUDA / cuBLAS / system failure; the message says which */
} lc_status;

typedef enum { LC_F32 = 0, LC_F16 = 1, LC_BF16 = 2 } lc_dtype;

/* ---- library and context ---- */

int32_t lc_abi_version(void);
const char *lc_backend_name(void); /* "cpu" or "cuda" */

/* Creates a context on `device` (ignored by the CPU backend). On failure *out is NULL and
 * lc_last_error(NULL) holds the reason (thread-local). */
lc_status lc_ctx_create(int32_t device, lc_ctx **out);
void lc_ctx_destroy(lc_ctx *ctx); /* frees all its lc_alloc / lc_host_alloc memory; NULL is a no-op */
const char *lc_last_error(const lc_ctx *ctx);

/* Bytes of device memory free and in total (CPU: the host's available and total memory). */
lc_status lc_mem_info(lc_ctx *ctx, uint64_t *free_bytes, uint64_t *total_bytes);

/* ---- memory ---- */

lc_status lc_alloc(lc_ctx *ctx, uint64_t bytes, void **out); /* zero-filled */
lc_status lc_free(lc_ctx *ctx, void *ptr);                  /* NULL is a no-op */
/* Host memory the device copies from at full speed (CUDA: page-locked, cudaHostAlloc; CPU: aligned
 * malloc), zero-filled; a host pointer for lc_upload / lc_download, not an op argument. Owned by
 * the context: freed with lc_host_free or with the context (after which the memory is gone). */
lc_status lc_host_alloc(lc_ctx *ctx, uint64_t bytes, void **out);
lc_status lc_host_free(lc_ctx *ctx, void *ptr); /* NULL is a no-op; only lc_host_alloc'd pointers */
/* Host -> device; the host buffer may be reused as soon as the call returns. From lc_host_alloc'd
 * memory it may be faster (CUDA: one DMA instead of a copy staged through a pinned buffer). */
lc_status lc_upload(lc_ctx *ctx, void *dst, const void *src_host, uint64_t bytes);
/* Host -> device, enqueued in order with the ops; returns at once (CUDA: one DMA, no wait). src_host
 * must lie inside one lc_host_alloc'd buffer and stay unchanged until the copy has run, i.e. until
 * the next lc_sync or lc_download returns. The CPU twin copies at the call. */
lc_status lc_upload_async(lc_ctx *ctx, void *dst, const void *src_host, uint64_t bytes);
/* Device -> host; waits for all work enqueued before it. */
lc_status lc_download(lc_ctx *ctx, void *dst_host, const void *src, uint64_t bytes);
lc_status lc_memset(lc_ctx *ctx, void *dst, int32_t byte_value, uint64_t bytes);
/* Device -> device, enqueued. */
lc_status lc_copy(lc_ctx *ctx, void *dst, const void *src, uint64_t bytes);
lc_status lc_sync(lc_ctx *ctx);

/* p[i] = scale * (2 * u(seed, i) - 1), u in [0, 1) from a counter-based hash, identical on every
 * backend:  h = splitmix64(splitmix64(seed) ^ i);  u = (h >> 40) * 2^-24
 * where splitmix64(x) = { x += 0x9e3779b97f4a7c15; x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
 *                         x = (x ^ (x >> 27)) * 0x94d049bb133111eb; return x ^ (x >> 31); } */
lc_status lc_fill_random(lc_ctx *ctx, lc_dtype dt, void *p, uint64_t n, uint64_t seed, float scale);

/* ---- graphs: record a sequence of ops once, replay it with new buffer contents ----
 * CUDA only (the CPU twin returns LC_ERR_UNSUPPORTED). Between begin and end, ops are recorded,
 * not run; no lc_upload / lc_download / lc_sync / lc_alloc / lc_free / lc_host_alloc /
 * lc_host_free may be called. A replay reads the buffers' contents at launch time, so metadata
 * uploaded before lc_graph_launch is what it sees. */
typedef struct lc_graph lc_graph;
lc_status lc_graph_begin(lc_ctx *ctx);
lc_status lc_graph_end(lc_ctx *ctx, lc_graph **out);
lc_status lc_graph_launch(lc_ctx *ctx, lc_graph *graph);
void lc_graph_destroy(lc_graph *graph); /* NULL is a no-op */

/* ---- ops ---- */

/* out[t, :] = table[ids[t], :]                          table [vocab, hidden] wt, out [n, hidden] act */
lc_status lc_embed(lc_ctx *ctx, lc_dtype wt, const void *table, int64_t vocab, int64_t hidden,
                   const int32_t *ids, int64_t n_tokens, lc_dtype act, void *out);

/* out[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w           x, out [n, hidden] act; w [hidden] wt */
lc_status lc_rmsnorm(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                     int64_t n_tokens, int64_t hidden, float eps, void *out);

/* residual[t] += x[t];  out[t] = residual[t] * rsqrt(mean(residual[t]^2) + eps) * w
 * (the residual add fused into the next norm)       x, residual, out [n, hidden] act; w [hidden] wt */
lc_status lc_add_rmsnorm(lc_ctx *ctx, lc_dtype act, const void *x, void *residual, lc_dtype wt, const void *w,
                         int64_t n_tokens, int64_t hidden, float eps, void *out);

/* y[m, n] = (accumulate ? y : 0) + x[m, k] @ W[n, k]^T     x, y act; W wt */
lc_status lc_linear(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w,
                    int64_t m, int64_t n, int64_t k, int32_t accumulate, void *y);

/* RoPE and paged KV write for one fused q|k|v projection. qkv [n, (n_heads + 2*n_kv_heads)*head_dim]
 * act holds each token's q, k and v side by side. For each token t:
 *   q_out[t] = rope(q[t]);   where slot_mapping[t] >= 0:  k_cache[slot] = rope(k[t]), v_cache[slot] = v[t]
 * rope is HF Llama's rotate-half, per head, i < head_dim/2:
 *   a = float(positions[t]) * inv_freq[i];  (x[i], x[i+d/2]) = (x[i]c - x[i+d/2]s, x[i+d/2]c + x[i]s)
 *   with c = cos(a)*attention_scaling, s = sin(a)*attention_scaling.
 * Rotated values are rounded to act (as a separate rope would leave them), then to cache_dt.
 * q_out [n, n_heads*head_dim] act; inv_freq [head_dim/2] f32 device; caches are
 * [num_blocks * block_size, n_kv_heads, head_dim] of cache_dt (slot = block * bs + offset). */
lc_status lc_rope_store(lc_ctx *ctx, lc_dtype act, const void *qkv, const int32_t *positions,
                        const int32_t *slot_mapping, int64_t n_tokens, int32_t n_heads,
                        int32_t n_kv_heads, int32_t head_dim, const float *inv_freq,
                        float attention_scaling, void *q_out, lc_dtype cache_dt, void *k_cache,
                        void *v_cache, int64_t cache_slots);

/* Ragged paged attention over a batch mixing prefill and decode (keys already stored):
 * sequence s owns query rows [q_indptr[s], q_indptr[s+1]); its n_q = q_indptr[s+1]-q_indptr[s]
 * queries sit at positions p = context_lens[s] - n_q + j, and
 *   out[t, h] = sum_i softmax_i(scale * q[t, h] . K[i, h / (n_heads/n_kv_heads)]) V[i, ...]
 * over key positions i in (p - window, p] (window = sliding_window, or p + 1 when it is 0).
 * Key position i of sequence s lives in slot block_tables[s * max_blocks_per_seq + i / bs] * bs + i % bs.
 * q, out [n_tokens, n_heads*head_dim] act. max_q_len / max_context_len bound n_q and
 * context_lens (used to size grids). `workspace` (device, may be NULL) lets a backend split long
 * contexts across blocks (flash-decoding); lc_attention_workspace_bytes gives the size that
 * enables it for these bounds; with less, the op runs unsplit. */
lc_status lc_attention(lc_ctx *ctx, lc_dtype act, const void *q, lc_dtype cache_dt,
                       const void *k_cache, const void *v_cache, int64_t cache_slots,
                       const int32_t *q_indptr, const int32_t *context_lens,
                       const int32_t *block_tables, int32_t max_blocks_per_seq, int32_t n_seqs,
                       int64_t n_tokens, int32_t max_q_len, int32_t max_context_len,
                       int32_t block_size, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                       int32_t sliding_window, float scale, void *workspace, uint64_t workspace_bytes,
                       void *out);
uint64_t lc_attention_workspace_bytes(int64_t n_tokens, int32_t n_seqs, int32_t max_q_len,
                                      int32_t max_context_len, int32_t n_heads, int32_t head_dim);

/* out[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i]     (a fused gate|up projection)
 * gate_up [n, 2*inter], out [n, inter] act; out must not overlap gate_up. */
lc_status lc_silu_mul(lc_ctx *ctx, lc_dtype act, const void *gate_up, int64_t n_tokens, int64_t inter,
                      void *out);

/* lc_linear then the op that consumes its output, as one op with the same results bit for bit (on a
 * backend, its own lc_linear's and the second op's). A backend may skip the intermediate: gate_up
 * and qkv are scratch it may leave unwritten (CUDA does at m = 1, where one kernel does both).
 *   lc_linear_silu_mul:   gate_up = x @ W^T, W [2*inter, k] (gate rows, then up rows);
 *                         out = lc_silu_mul(gate_up)                      out [m, inter] act
 *   lc_linear_rope_store: qkv = x @ W^T, W [(n_heads + 2*n_kv_heads)*head_dim, k];
 *                         lc_rope_store(qkv, ...) over m tokens */
lc_status lc_linear_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w, int64_t m,
                             int64_t inter, int64_t k, void *gate_up, void *out);
lc_status lc_linear_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, lc_dtype wt, const void *w, int64_t m,
                               int64_t k, void *qkv, const int32_t *positions, const int32_t *slot_mapping,
                               int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, const float *inv_freq,
                               float attention_scaling, void *q_out, lc_dtype cache_dt, void *k_cache,
                               void *v_cache, int64_t cache_slots);

/* y[i] += x[i]                                              n elements of act */
lc_status lc_add(lc_ctx *ctx, lc_dtype act, const void *x, int64_t n, void *y);

/* out[r, :] = x[rows[r], :]                                 x [*, width], out [n_rows, width] act */
lc_status lc_gather_rows(lc_ctx *ctx, lc_dtype act, const void *x, int64_t width,
                         const int32_t *rows, int64_t n_rows, int64_t x_rows, void *out);

/* One projection of a LoRA launch. A launch covers up to LC_LORA_MAX_MODULES projections that read
 * the same input (q, k, v; or gate, up), so a fused projection takes one shrink and one expand. The
 * tables are device arrays indexed by adapter slot, n_slots long; the struct itself is host memory
 * read during the call. */
typedef struct lc_lora_module {
  const void *const *a_ptrs;    /* shrink: A[s] [r, in_dim] wt */
  const void *const *b_ptrs;    /* expand: B[s] [out_dim, r] wt */
  const int32_t *ranks;         /* r = ranks[s] in [0, max_rank]; 0 skips the slot */
  const float *scales;          /* expand */
  const float *const *dora_mag; /* expand; may be NULL (no slot uses DoRA) */
  int64_t out_offset, out_dim;  /* expand: this projection's columns [out_offset, out_offset + out_dim) of y */
} lc_lora_module;
#define LC_LORA_MAX_MODULES 3

/* LoRA shrink over segments (SGMV). Segment g covers rows [seg_indptr[g], seg_indptr[g+1]) and uses
 * adapter slot s = seg_slot[g]; s < 0 (the base model) or a module's ranks[s] == 0 skips it. For
 * module m of mods[0, n_mods) and the segment's rows:
 *   tmp[t, m*max_rank + (0:r)] = x[t, :] @ A_m[s]^T            r = ranks_m[s]
 * tmp [n_tokens, n_mods*max_rank] f32; other columns and rows of skipped segments are left untouched. */
lc_status lc_lora_shrink(lc_ctx *ctx, lc_dtype act, const void *x, int64_t in_dim, lc_dtype wt,
                         const lc_lora_module *mods, int32_t n_mods, int32_t n_slots,
                         const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs,
                         int64_t n_tokens, int32_t max_rank, float *tmp);

/* LoRA expand over the same segments, for module m with columns c = out_offset + o of y [n_tokens, y_width]:
 *   y[t, c] += scales_m[s] * tmp[t, m*max_rank + (0:r)] . B_m[s][o, :]
 * or, where dora_mag != NULL and dora_mag[s] != NULL (DoRA; dora_mag[s] [out_dim] f32, the
 * magnitude divided by the row norm of W + scale*B@A), with y holding the base output x @ W^T:
 *   y[t, c] = dora_mag_m[s][o] * (y[t, c] + scales_m[s] * tmp[t, m*max_rank + (0:r)] . B_m[s][o, :]) */
lc_status lc_lora_expand(lc_ctx *ctx, lc_dtype act, const float *tmp, int32_t max_rank, lc_dtype wt,
                         const lc_lora_module *mods, int32_t n_mods, int32_t n_slots,
                         const int32_t *seg_indptr, const int32_t *seg_slot, int32_t n_segs,
                         int64_t n_tokens, int64_t y_width, void *y);

/* Logit rules: what a request asks of its distribution beyond temperature and truncation, applied in
 * place to logits [n_rows, vocab] (act) before lc_sample. Per element v of row r, in fp32 from the
 * stored logit l, rounded once to act:
 *   allowed (a grammar's mask): mask_row[r] >= 0 and bit v of allowed[mask_row[r]] clear: -inf
 *   logit_bias: l += bias_values[j] where bias_ids[j] == v, j in [bias_indptr[r], bias_indptr[r+1])
 *     (ids ascending and distinct within a row)
 *   penalties where count_row[r] >= 0, o = output_counts[count_row[r], v], p = prompt_counts[...]:
 *     repetition (vLLM / transformers), where o > 0 or p > 0: l > 0 ? l / repetition[r] : l * repetition[r]
 *     then (OpenAI) l -= frequency[r] * o, then l -= presence[r] where o > 0
 * Each group's pointers are NULL together where no row uses it (mask_row, allowed | bias_indptr,
 * bias_ids, bias_values | count_row, both count tables, presence, frequency, repetition). A mask
 * row >= n_mask_rows, a count row >= n_count_rows or a bias id outside [0, vocab) is skipped (CUDA:
 * reported at the next sync; the twin refuses the call). */
typedef struct lc_logit_rules {
  const int32_t *mask_row;      /* [n_rows] */
  const uint32_t *allowed;      /* [n_mask_rows, ceil(vocab / 32)], bit v % 32 of word v / 32 */
  const int32_t *bias_indptr;   /* [n_rows + 1] */
  const int32_t *bias_ids;
  const float *bias_values;
  const int32_t *count_row;     /* [n_rows] */
  const int32_t *output_counts; /* [n_count_rows, vocab]: each generated token's count */
  const int32_t *prompt_counts; /* [n_count_rows, vocab]: > 0 where the token is in the prompt */
  const float *presence;        /* [n_rows] each */
  const float *frequency;
  const float *repetition;
  int64_t n_mask_rows;
  int64_t n_count_rows;
} lc_logit_rules;

lc_status lc_logit_rules_apply(lc_ctx *ctx, lc_dtype act, void *logits, int32_t n_rows, int32_t vocab,
                               const lc_logit_rules *rules);

/* counts[rows[i], ids[i]] += 1 for i < n where rows[i] >= 0 (counts [n_count_rows, vocab] i32;
 * rows, ids device arrays [n]). A row >= n_count_rows or an id outside [0, vocab) is skipped (CUDA:
 * reported at the next sync; the twin refuses the call). Feeding it lc_sample's out_ids keeps a
 * sequence's output counts on the device with no host round trip. */
lc_status lc_count_tokens(lc_ctx *ctx, int32_t *counts, int32_t n_count_rows, int32_t vocab, const int32_t *rows,
                          const int32_t *ids, int32_t n);

/* Sampling, one row of logits [n_rows, vocab] (act) per sequence:
 *   logprob = log_softmax(logits[r])  (what logprobs report: after lc_logit_rules_apply, before
 *   temperature and truncation)
 *   temperature[r] == 0: out_ids[r] = argmax (lowest id on ties)
 *   else: p = softmax(logits[r] / temperature[r]); keep the top_k[r] most likely (0 = all) and, of
 *         those, the ones with (logit - max logit) / temperature >= float(log(double(min_p[r])))
 *         (min_p: p >= min_p * max p; 0 = all); then the smallest most-likely prefix whose mass
 *         reaches top_p[r] of the kept mass (1 = all); renormalise; walk the kept tokens from most to
 *         least likely (ties: lower id first) and take the first whose cumulative mass exceeds
 *         uniforms[r] * kept mass.
 *   out_logprob[r] = logprob[out_ids[r]]; out_top_ids / out_top_logprobs [n_rows, n_top] the n_top
 *   largest logprobs (descending, ties: lower id first); n_top may be 0 (then both may be NULL).
 * temperature, top_p, min_p, uniforms f32 and top_k i32 are device arrays [n_rows]. */
lc_status lc_sample(lc_ctx *ctx, lc_dtype act, const void *logits, int32_t n_rows, int32_t vocab,
                    const float *temperature, const int32_t *top_k, const float *top_p, const float *min_p,
                    const float *uniforms, int32_t n_top, int32_t *out_ids, float *out_logprob,
                    int32_t *out_top_ids, float *out_top_logprobs);

#ifdef __cplusplus
}
#endif
#endif /* LORACUDA_H */
