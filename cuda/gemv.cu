// y[1, n] = x[1, k] W[n, k]^T for decode at batch 1: a warp per R output rows, each lane keeping
// R * U sixteen-byte loads of W in flight. A step at batch 1 reads every weight once and does little else,
// so this op's bandwidth is the step's: cuBLAS's m = 1 kernels read at 3.3-3.9 TB/s on an H200
// (copy: 4.26), and split-K added a reduce kernel to two of the four projections per layer.
// An epilogue decides which R rows a warp reads and what it does with their sums: store them (lc_linear),
// or, where the next op only combines rows pairwise, do that op in place of a launch: silu(gate) * up
// (lc_linear_silu_mul) or RoPE and the KV write (lc_linear_rope_store).
#include "gemv.cuh"

#include "rope.cuh"

namespace {

constexpr int WARPS = 4, THREADS = WARPS * 32, R = 2, U = 4;

// Rows 2w and 2w + 1 of y = (accumulate ? y : 0) + x W^T.
template <typename T> struct StoreRows {
  int64_t n;
  int accumulate;
  T *y;
  __device__ int64_t row(int64_t w, int r) const { return w * R + r; }
  __device__ int rows(int64_t w) const { return int(max(int64_t(0), min(int64_t(R), n - w * R))); }
  __device__ void finish(int64_t w, const float (&sum)[R]) const {
    for (int r = 0; r < rows(w); ++r) {
      const int64_t o = w * R + r;
      y[o] = lc::from_f<T>(accumulate ? lc::to_f(y[o]) + sum[r] : sum[r]);
    }
  }
};

// Rows w (gate) and inter + w (up): out[w] = silu(g) * u, g and u rounded to T first as lc_linear would
// store them, then lc::silu_times as silu_mul_kernel, so the result is lc_linear + lc_silu_mul's.
template <typename T> struct SiluMulRows {
  int64_t inter;
  T *out;
  __device__ int64_t row(int64_t w, int r) const { return w + r * inter; }
  __device__ int rows(int64_t w) const { return w < inter ? R : 0; }
  __device__ void finish(int64_t w, const float (&sum)[R]) const {
    const float g = lc::to_f(lc::from_f<T>(sum[0])), u = lc::to_f(lc::from_f<T>(sum[1]));
    out[w] = lc::from_f<T>(lc::silu_times(g, u));
  }
};

// Rows i and i + half of head h of the fused q|k|v projection (warp w = h * half + i): q's rotated into
// q_out, k's rotated into the token's cache slot, v's copied there, each as lc_rope_store does it.
template <typename T, typename C> struct RopeStoreRows {
  int heads, n_heads, n_kv_heads, half;
  const int32_t *positions, *slot_mapping;
  const float *inv_freq;
  float scaling;
  T *q_out;
  C *k_cache, *v_cache;
  int64_t cache_slots;
  int *err;
  __device__ int64_t row(int64_t w, int r) const { return int64_t(int(w) / half) * 2 * half + int(w) % half + r * half; }
  __device__ int rows(int64_t w) const { return w < int64_t(heads) * half ? R : 0; }
  __device__ void finish(int64_t w, const float (&sum)[R]) const {
    const int h = int(w) / half, i = int(w) % half;  // w < heads * half fits an int
    const int64_t mapped = slot_mapping[0], slot = mapped < cache_slots ? mapped : -1;
    if (mapped >= cache_slots && w == 0) lc::report(err, LC_DEV_KV_SLOT);  // q is still written
    const float a = lc::to_f(lc::from_f<T>(sum[0])), b = lc::to_f(lc::from_f<T>(sum[1]));
    const int64_t kv_width = int64_t(n_kv_heads) * 2 * half;
    if (h >= n_heads + n_kv_heads) {  // v: a copy
      if (slot < 0) return;
      C *v = v_cache + slot * kv_width + int64_t(h - n_heads - n_kv_heads) * 2 * half + i;
      v[0] = lc::from_f<C>(a);
      v[half] = lc::from_f<C>(b);
      return;
    }
    const lc::RopeAngle ang = lc::rope_angle(positions[0], inv_freq[i], scaling);
    const T lo = lc::from_f<T>(lc::rope_lo(a, b, ang)), hi = lc::from_f<T>(lc::rope_hi(a, b, ang));
    if (h < n_heads) {
      T *q = q_out + int64_t(h) * 2 * half + i;
      q[0] = lo;
      q[half] = hi;
    } else if (slot >= 0) {
      C *k = k_cache + slot * kv_width + int64_t(h - n_heads) * 2 * half + i;
      k[0] = lc::from_f<C>(lc::to_f(lo));
      k[half] = lc::from_f<C>(lc::to_f(hi));
    }
  }
};

// Warp w = blockIdx.x * WARPS + warp reads rows e.row(w, 0:e.rows(w)): each x vector (from L1: x is a few
// KB that every warp reads) serves R rows, and R * U loads of W are in flight per lane. The body is the
// plain GEMV's of run 5 with e.row for n0 + r (a first form that cached row pointers ran ~8 % slower, runs
// 7b-7d); 7 blocks an SM are asked for (at most 72 registers: silu's epilogue took 80 and 6 blocks).
template <typename T, typename E>
__global__ void __launch_bounds__(THREADS, 7) gemv_kernel(const T *__restrict__ x, const T *__restrict__ w, int64_t k,
                                                        E e) {
  const int lane = threadIdx.x & 31;
  const int64_t wi = int64_t(blockIdx.x) * WARPS + (threadIdx.x >> 5);
  const int rows = e.rows(wi);  // 0 past the last row
  const uint4 *xv = reinterpret_cast<const uint4 *>(x);
  const int64_t n_vec = k / 8;
  // While the previous kernel finishes (launch_pdl), pull this warp's first weights into L2: W is no
  // kernel's output, so it may be read before the wait.
  lc::pdl_trigger();
  for (int r = 0; r < rows; ++r)
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (lane + 32 * u < n_vec) lc::prefetch_l2(reinterpret_cast<const uint4 *>(w + e.row(wi, r) * k) + lane + 32 * u);
  lc::pdl_wait();
  if (rows == 0) return;  // uniform across the warp
  float acc[R] = {};
  for (int64_t v0 = lane; v0 < n_vec; v0 += 32 * U) {
    uint4 a[R][U], b[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (v0 + 32 * u >= n_vec) break;
      b[u] = __ldg(xv + v0 + 32 * u);
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (r < rows) a[r][u] = reinterpret_cast<const uint4 *>(w + e.row(wi, r) * k)[v0 + 32 * u];
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (v0 + 32 * u >= n_vec) break;
      float fb[8];
      lc::unpack8<T>(b[u], fb);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float fa[8];
        lc::unpack8<T>(a[r][u], fa);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r] += fa[i] * fb[i];
      }
    }
  }
  float sum[R];
#pragma unroll
  for (int r = 0; r < R; ++r) sum[r] = lc::warp_sum(acc[r]);
  if (lane == 0) e.finish(wi, sum);
}

template <typename T, typename E> lc_status launch(lc_ctx *ctx, const void *x, const void *w, int64_t k, const E &e,
                                                   int64_t warps, const char *op) {
  lc::launch_pdl(ctx, gemv_kernel<T, E>, dim3(lc::blocks_for(warps, WARPS)), dim3(THREADS), 0,
                 static_cast<const T *>(x), static_cast<const T *>(w), k, e);
  return lc::launched(ctx, op);
}

}  // namespace

namespace lc {

bool gemv_fits(lc_dtype act, lc_dtype wt, int64_t m, int64_t k, const void *x, const void *w) {
  return m == 1 && act == wt && act != LC_F32 && k % 8 == 0 && lc::aligned16(x) &&
         lc::aligned16(w);
}

lc_status linear_gemv(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t n, int64_t k,
                      int32_t accumulate, void *y) {
  lc_status st = LC_OK;
  lc_dispatch(act, [&](auto a) {
    using T = decltype(a);
    if constexpr (sizeof(T) == 2)
      st = launch<T>(ctx, x, w, k, StoreRows<T>{n, accumulate, static_cast<T *>(y)}, (n + R - 1) / R, "lc_linear");
  });
  return st;
}

lc_status linear_gemv_silu_mul(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t inter, int64_t k,
                               void *out) {
  lc_status st = LC_OK;
  lc_dispatch(act, [&](auto a) {
    using T = decltype(a);
    if constexpr (sizeof(T) == 2)
      st = launch<T>(ctx, x, w, k, SiluMulRows<T>{inter, static_cast<T *>(out)}, inter, "lc_linear_silu_mul");
  });
  return st;
}

lc_status linear_gemv_rope_store(lc_ctx *ctx, lc_dtype act, const void *x, const void *w, int64_t k,
                                 const int32_t *positions, const int32_t *slot_mapping, int32_t n_heads,
                                 int32_t n_kv_heads, int32_t head_dim, const float *inv_freq, float scaling,
                                 void *q_out, lc_dtype cache_dt, void *k_cache, void *v_cache, int64_t cache_slots) {
  lc_status st = LC_OK;
  const int heads = n_heads + 2 * n_kv_heads, half = head_dim / 2;
  lc_dispatch(act, [&](auto a) {
    lc_dispatch(cache_dt, [&](auto c) {
      using T = decltype(a);
      using C = decltype(c);
      if constexpr (sizeof(T) == 2) {
        const RopeStoreRows<T, C> e{heads, n_heads, n_kv_heads, half, positions, slot_mapping, inv_freq, scaling,
                                    static_cast<T *>(q_out), static_cast<C *>(k_cache), static_cast<C *>(v_cache),
                                    cache_slots, ctx->dev_error};
        st = launch<T>(ctx, x, w, k, e, int64_t(heads) * half, "lc_linear_rope_store");
      }
    });
  });
  return st;
}

}  // namespace lc
