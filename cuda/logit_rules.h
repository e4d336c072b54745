// The per-element arithmetic of lc_logit_rules_apply and lc_sample's min_p cut, shared by the CUDA
// kernels and the CPU twin so that both give the same bits (each product rounded on its own: nvcc
// would otherwise fuse a multiply-add the twin, built -std=c++17, rounds twice).
#pragma once
#include <cmath>
#include <cstdint>

#include "loracuda.h"

#ifdef __CUDACC__
#define LC_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LC_HOST_DEVICE inline
#endif

namespace lc {

LC_HOST_DEVICE float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

LC_HOST_DEVICE bool token_allowed(const uint32_t *mask_words, int64_t v) {
  return (mask_words[v >> 5] >> (v & 31)) & 1u;
}

// Bias, then the repetition, frequency and presence penalties (see loracuda.h) on one logit.
LC_HOST_DEVICE float apply_bias_and_penalties(float l, float bias, bool penalize, int32_t out_count, int32_t prompt_count,
                                              float presence, float frequency, float repetition) {
  l += bias;
  if (!penalize) return l;
  if (out_count > 0 || prompt_count > 0) l = l > 0.0f ? l / repetition : mul_rn(l, repetition);
  l -= mul_rn(frequency, float(out_count));
  if (out_count > 0) l -= presence;
  return l;
}

// lc_sample keeps a token when (logit - top) / T >= this (min_p 0: every token).
LC_HOST_DEVICE float min_p_log_threshold(float min_p) {
  return min_p > 0.0f ? float(log(double(min_p))) : -INFINITY;
}

// The row's bias for token v: a binary search of its ascending ids (0 where it has none).
LC_HOST_DEVICE float bias_for(const int32_t *ids, const float *values, int32_t n, int32_t v) {
  int32_t lo = 0, hi = n;
  while (lo < hi) {
    const int32_t mid = (lo + hi) >> 1;
    if (ids[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && ids[lo] == v ? values[lo] : 0.0f;
}

}  // namespace lc

namespace lc {

// The host-side contract of lc_logit_rules_apply's arguments (each rules group all set or all NULL):
// nullptr, or what is wrong.
inline const char *logit_rules_contract(const void *logits, int32_t n_rows, int32_t vocab, const lc_logit_rules *r) {
  if (!logits || n_rows < 0 || vocab <= 0) return "bad logits or shape";
  if (!r) return "NULL rules";
  if (!r->mask_row != !r->allowed) return "mask_row and allowed must be set together";
  if (r->mask_row && r->n_mask_rows <= 0) return "n_mask_rows must be > 0 with a mask";
  if (!r->bias_indptr != !r->bias_ids || !r->bias_ids != !r->bias_values) return "bias_indptr, bias_ids and bias_values must be set together";
  const bool counts = r->count_row, all = r->output_counts && r->prompt_counts && r->presence && r->frequency && r->repetition;
  if (counts != all || (!counts && (r->output_counts || r->prompt_counts || r->presence || r->frequency || r->repetition)))
    return "count_row, output_counts, prompt_counts, presence, frequency and repetition must be set together";
  if (counts && r->n_count_rows <= 0) return "n_count_rows must be > 0 with penalties";
  return nullptr;
}

// The host-side contract of lc_count_tokens' arguments: nullptr, or what is wrong.
inline const char *count_tokens_contract(const int32_t *counts, int32_t n_count_rows, int32_t vocab, const int32_t *rows,
                                         const int32_t *ids, int32_t n) {
  if (n < 0 || n_count_rows <= 0 || vocab <= 0) return "bad shape";
  if (n > 0 && !(counts && rows && ids)) return "NULL pointer";
  return nullptr;
}

}  // namespace lc
