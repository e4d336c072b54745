#include "common.h"

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

// p[i] = scale * (2 * u(seed, i) - 1),  u = (splitmix64(splitmix64(seed) ^ i) >> 40) * 2^-24
extern "C" lc_status lc_fill_random(lc_ctx *ctx, lc_dtype dt, void *p, uint64_t n, uint64_t seed, float scale) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE_DTYPE(ctx, dt);
  LC_REQUIRE(ctx, p || n == 0, "lc_fill_random: NULL pointer");
  const uint64_t key = splitmix64(seed);
  for (uint64_t i = 0; i < n; ++i) {
    const float u = float(splitmix64(key ^ i) >> 40) * 0x1p-24f;  // exact: a 24-bit integer times 2^-24
    lc::store(p, dt, int64_t(i), scale * (2.0f * u - 1.0f));
  }
  return LC_OK;
}
