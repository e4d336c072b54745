// Shared pieces of the CPU twin: the context, error reporting, argument checks, dtype conversion.
#pragma once
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "../host_allocations.h"
#include "../loracuda.h"

struct lc_ctx {
  std::string last_error;
  std::unordered_set<void *> allocations;       // lc_alloc'd
  lc::HostAllocations host_allocations;  // lc_host_alloc'd: base -> bytes
};

namespace lc {

lc_status fail(lc_ctx *ctx, lc_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

inline bool valid_dtype(lc_dtype dt) { return dt == LC_F32 || dt == LC_F16 || dt == LC_BF16; }
inline int64_t dtype_bytes(lc_dtype dt) { return dt == LC_F32 ? 4 : 2; }

inline float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise the mantissa
    int e = -1;
    do { mant <<= 1; ++e; } while (!(mant & 0x400));
    bits = sign | uint32_t(112 - e) << 23 | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_half(float f) {  // round to nearest even, as CUDA's __float2half_rn
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx > 0x7f800000) return uint16_t(sign | 0x7e00);  // NaN
  if (absx >= 0x477ff000) return uint16_t(sign | 0x7c00);  // rounds to inf
  if (absx < 0x38800000) {                                   // subnormal half or zero
    float a;
    std::memcpy(&a, &absx, 4);
    return uint16_t(sign | uint32_t(std::nearbyint(a * 16777216.0f)));  // a / 2^-24
  }
  uint32_t mant = absx & 0x7fffff, exp = (absx >> 23) - 112;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
  return uint16_t(sign | h);
}

inline float bf16_to_float(uint16_t b) {
  uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 0x40);
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

inline float load(const void *p, lc_dtype dt, int64_t i) {
  switch (dt) {
    case LC_F32: return static_cast<const float *>(p)[i];
    case LC_F16: return half_to_float(static_cast<const uint16_t *>(p)[i]);
    default: return bf16_to_float(static_cast<const uint16_t *>(p)[i]);
  }
}

inline void store(void *p, lc_dtype dt, int64_t i, float v) {
  switch (dt) {
    case LC_F32: static_cast<float *>(p)[i] = v; break;
    case LC_F16: static_cast<uint16_t *>(p)[i] = float_to_half(v); break;
    default: static_cast<uint16_t *>(p)[i] = float_to_bf16(v); break;
  }
}

// v as the nearest value of dtype dt (what a store then a load gives).
inline float round_to(lc_dtype dt, float v) {
  if (dt == LC_F32) return v;
  return dt == LC_F16 ? half_to_float(float_to_half(v)) : bf16_to_float(float_to_bf16(v));
}

// Converts n elements starting at element `offset` into out (a no-copy fast path is not worth it here).
inline void load_row(const void *p, lc_dtype dt, int64_t offset, int64_t n, float *out) {
  if (dt == LC_F32) {
    std::memcpy(out, static_cast<const float *>(p) + offset, size_t(n) * 4);
    return;
  }
  const uint16_t *src = static_cast<const uint16_t *>(p) + offset;
  if (dt == LC_F16)
    for (int64_t i = 0; i < n; ++i) out[i] = half_to_float(src[i]);
  else
    for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(src[i]);
}

inline void store_row(void *p, lc_dtype dt, int64_t offset, int64_t n, const float *in) {
  if (dt == LC_F32) {
    std::memcpy(static_cast<float *>(p) + offset, in, size_t(n) * 4);
    return;
  }
  for (int64_t i = 0; i < n; ++i) store(p, dt, offset + i, in[i]);
}

// Eight independent partial sums so the compiler vectorises without -ffast-math.
inline float dot(const float *a, const float *b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// RMSNorm of one row in place, shared by lc_rmsnorm and lc_add_rmsnorm so both give the same bits:
// row = row * (1 / sqrt(mean(row^2) + eps)) * weight.
inline void rmsnorm_row(float *row, const float *weight, int64_t hidden, float eps) {
  const float mean_square = dot(row, row, hidden) / float(hidden);
  const float inv = 1.0f / std::sqrt(mean_square + eps);
  for (int64_t i = 0; i < hidden; ++i) row[i] = row[i] * inv * weight[i];
}

}  // namespace lc

// Argument checks at the ABI boundary: return LC_ERR_INVALID_ARGUMENT with a message.
#define LC_REQUIRE(ctx, cond, ...) \
  do { \
    if (!(cond)) return lc::fail(ctx, LC_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)
#define LC_REQUIRE_CTX(ctx) \
  do { \
    if (!(ctx)) return lc::fail(nullptr, LC_ERR_INVALID_ARGUMENT, "context is NULL"); \
    (ctx)->last_error.clear(); \
  } while (0)
#define LC_REQUIRE_DTYPE(ctx, dt) LC_REQUIRE(ctx, lc::valid_dtype(dt), "%s: unknown dtype %d", __func__, int(dt))
