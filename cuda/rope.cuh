// HF Llama's rotate-half RoPE for one pair (x[i], x[i + d/2]), shared by every kernel that rotates
// (rope_store.cu, gemv.cu's fused epilogue) so that they give the same bits.
#pragma once
#include "common.cuh"

namespace lc {

struct RopeAngle {
  float c, s;  // cos and sin of the angle, times attention_scaling
};

__device__ __forceinline__ RopeAngle rope_angle(int32_t position, float inv_freq, float scaling) {
  const float angle = float(position) * inv_freq;  // rounded to fp32 first, as HF does
  double s, c;
  sincos(double(angle), &s, &c);  // the twin evaluates cos/sin in double, then rounds to fp32
  return {float(c) * scaling, float(s) * scaling};
}

// x c - y s and y c + x s with each product rounded: no kernel may fuse them into an FMA differently.
__device__ __forceinline__ float rope_lo(float x, float y, RopeAngle a) { return __fsub_rn(__fmul_rn(x, a.c), __fmul_rn(y, a.s)); }
__device__ __forceinline__ float rope_hi(float x, float y, RopeAngle a) { return __fadd_rn(__fmul_rn(y, a.c), __fmul_rn(x, a.s)); }

}  // namespace lc
