// Small row-wise ops: SiLU-gated product, residual add, row gather.
#include "common.cuh"

// out[t, i] = silu(g) * u = g / (1 + exp(-g)) * u   with g = gate_up[t, i], u = gate_up[t, inter + i]
// A thread takes VEC consecutive values: one 16-byte vector, or 1 value where inter or a pointer is not
// aligned. Grid (column blocks, token rows): no division per element; rows past gridDim.y loop.
template <typename A, int VEC>
__global__ void silu_mul_kernel(const A *gate_up, int64_t inter, int64_t n_tokens, A *out) {
  lc::pdl_trigger();  // see lc::launch_pdl
  lc::pdl_wait();
  using V = lc::Pack<A, VEC>;
  const int64_t n = inter / VEC, j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= n) return;
  for (int64_t t = blockIdx.y; t < n_tokens; t += gridDim.y) {
    const V *row = reinterpret_cast<const V *>(gate_up + t * 2 * inter);
    const V g = row[j], u = row[n + j];
    V o;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      o.v[e] = lc::from_f<A>(lc::silu_times(lc::to_f(g.v[e]), lc::to_f(u.v[e])));
    }
    reinterpret_cast<V *>(out + t * inter)[j] = o;
  }
}

// y[i] += x[i]
template <typename A> __global__ void add_kernel(const A *x, int64_t n, A *y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = lc::from_f<A>(lc::to_f(y[i]) + lc::to_f(x[i]));
}

// out[r, :] = x[rows[r], :]   (a row outside [0, x_rows) gives zeros and a device error)
template <typename A>
__global__ void gather_rows_kernel(const A *x, int64_t width, const int32_t *rows, int64_t x_rows, A *out, int *err) {
  const int64_t r = blockIdx.x, src = rows[r];
  const bool ok = src >= 0 && src < x_rows;
  if (!ok && threadIdx.x == 0) lc::report(err, LC_DEV_GATHER_ROW);
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) out[r * width + i] = ok ? x[src * width + i] : lc::from_f<A>(0.0f);
}

// Grid-stride launches: a grid bounded by the element count (capped; the loop covers the rest).
static unsigned stride_grid(int64_t n) { return unsigned(n / 256 + 1 < 65536 ? n / 256 + 1 : 65536); }

extern "C" lc_status lc_silu_mul(lc_ctx *ctx, lc_dtype act, const void *gate_up, int64_t n_tokens, int64_t inter,
                                 void *out) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, gate_up && out, "lc_silu_mul: NULL pointer");
  LC_REQUIRE(ctx, n_tokens >= 0 && inter > 0, "lc_silu_mul: bad shape");
  if (n_tokens == 0) return LC_OK;
  LC_REQUIRE(ctx, (inter + 127) / 128 <= INT32_MAX, "lc_silu_mul: inter %lld too large", (long long)inter);
  // 128 threads: a row of 11008 / 8 = 1376 vectors takes 11 blocks, 2 % of their lanes idle (256: 10 %)
  constexpr int THREADS = 128;
  const unsigned rows = unsigned(n_tokens < 65535 ? n_tokens : 65535);
  lc_dispatch(act, [&](auto a) {
    using A = decltype(a);
    constexpr int VEC = 16 / sizeof(A);
    const auto g = static_cast<const A *>(gate_up);
    const auto o = static_cast<A *>(out);
    if (inter % VEC == 0 && lc::aligned16(gate_up) && lc::aligned16(out))
      lc::launch_pdl(ctx, silu_mul_kernel<A, VEC>, dim3(lc::blocks_for(inter / VEC, THREADS), rows), dim3(THREADS), 0,
                     g, inter, n_tokens, o);
    else
      lc::launch_pdl(ctx, silu_mul_kernel<A, 1>, dim3(lc::blocks_for(inter, THREADS), rows), dim3(THREADS), 0, g,
                     inter, n_tokens, o);
  });
  return lc::launched(ctx, "lc_silu_mul");
}

extern "C" lc_status lc_add(lc_ctx *ctx, lc_dtype act, const void *x, int64_t n, void *y) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, x && y && n >= 0, "lc_add: bad argument");
  if (n == 0) return LC_OK;
  lc_dispatch(act, [&](auto a) {
    using A = decltype(a);
    add_kernel<A><<<stride_grid(n), 256, 0, ctx->stream>>>(static_cast<const A *>(x), n, static_cast<A *>(y));
  });
  return lc::launched(ctx, "lc_add");
}

extern "C" lc_status lc_gather_rows(lc_ctx *ctx, lc_dtype act, const void *x, int64_t width, const int32_t *rows,
                                    int64_t n_rows, int64_t x_rows, void *out) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, x && rows && out && width > 0 && n_rows >= 0 && n_rows <= INT32_MAX, "lc_gather_rows: bad argument");
  if (n_rows == 0) return LC_OK;
  lc_dispatch(act, [&](auto a) {
    using A = decltype(a);
    gather_rows_kernel<A><<<unsigned(n_rows), 256, 0, ctx->stream>>>(static_cast<const A *>(x), width, rows, x_rows,
                                                                    static_cast<A *>(out), ctx->dev_error);
  });
  return lc::launched(ctx, "lc_gather_rows");
}
