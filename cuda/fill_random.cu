// Counter-based random fill, bit-identical to the CPU twin (integer hash, exact u, one fp32 multiply).
#include "common.cuh"

namespace {

__host__ __device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// p[i] = scale * (2 * u(seed, i) - 1),  u = (splitmix64(splitmix64(seed) ^ i) >> 40) * 2^-24
template <typename T> __global__ void fill_random_kernel(T *p, uint64_t n, uint64_t key, float scale) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x) {
    const float u = float(uint32_t(splitmix64(key ^ i) >> 40)) * 0x1p-24f;  // exact
    p[i] = lc::from_f<T>(__fmul_rn(scale, 2.0f * u - 1.0f));                // 2u - 1 is exact too
  }
}

}  // namespace

extern "C" lc_status lc_fill_random(lc_ctx *ctx, lc_dtype dt, void *p, uint64_t n, uint64_t seed, float scale) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, dt);
  LC_REQUIRE(ctx, p || n == 0, "lc_fill_random: NULL pointer");
  if (n == 0) return LC_OK;
  const unsigned blocks = unsigned(n / 256 + 1 < 65536 ? n / 256 + 1 : 65536);  // grid-stride beyond
  const uint64_t key = splitmix64(seed);
  lc_dispatch(dt, [&](auto t) {
    using T = decltype(t);
    fill_random_kernel<T><<<blocks, 256, 0, ctx->stream>>>(static_cast<T *>(p), n, key, scale);
  });
  return lc::launched(ctx, "lc_fill_random");
}
