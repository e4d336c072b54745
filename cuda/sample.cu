// Sampling and log-probabilities, one block per row of logits (see loracuda.h for the rules).
//
// No scratch proportional to the vocabulary: every step is a pass over the row (it stays in L2).
// Elements are totally ordered by (logit descending, id ascending); "the first n most likely" is a
// prefix of that order, named by its last element. The top-k / top-p / sampled element is the first
// element whose cumulative weight (a count, or the unnormalised probability) crosses a target: it
// is found digit by digit on the 32-bit order key (4 bits a pass, a 16-bin histogram of counts and
// weights each pass), then by rank among the tied ids. Each weight is expf((logit - top) / T) in
// fp32 (the twin: exp in fp64), summed in fp64, so a sample can differ from the twin's only where
// its cumulative mass lies within ~1e-6 (relative) of the threshold.
#include <climits>

#include "common.cuh"
#include "logit_rules.h"

namespace {

constexpr int THREADS = 512, WARPS = THREADS / 32, BINS = 16;
constexpr int MAX_TOP = 256;  // top-n rounds are one pass each

struct Key {
  uint32_t key;  // order_key(logit): larger key = larger logit
  int32_t id;
};
constexpr Key NONE{0u, INT_MAX};  // sorts after every real element; as a limit it admits all of them

__device__ __forceinline__ uint32_t order_key(float v) {
  if (v == 0.0f) v = 0.0f;  // -0 and +0 compare equal in the twin: tie, broken by id
  const uint32_t b = __float_as_uint(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t key) { return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key); }
__device__ __forceinline__ bool before(Key a, Key b) { return a.key > b.key || (a.key == b.key && a.id < b.id); }
// Whether element (key, id) is in the prefix of the order that ends with `lim` (inclusive).
__device__ __forceinline__ bool within(uint32_t key, int32_t id, Key lim) {
  return key > lim.key || (key == lim.key && id <= lim.id);
}

struct Shared {
  double w[WARPS][BINS];
  unsigned c[WARPS][BINS];
  double dsum[32];
  Key keys[32];
  Key result;
  uint32_t prefix;
  double before, bucket_weight;
  unsigned bucket_count;
  int found;
};

template <typename T> __device__ __forceinline__ T shfl(T v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }

// The first (want_first) or last element of the order among those accepted by keep(key, id).
template <typename A, typename F>
__device__ Key block_extreme(const A *row, int vocab, bool want_first, F keep, Shared &sh) {
  Key best = NONE;
  bool have = false;
  for (int i = threadIdx.x; i < vocab; i += THREADS) {
    const Key e{order_key(lc::to_f(row[i])), i};
    if (!keep(e.key, e.id)) continue;
    if (!have || (want_first ? before(e, best) : before(best, e))) best = e, have = true;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const Key other{shfl(best.key, o), shfl(best.id, o)};
    const bool other_have = shfl(int(have), o);
    if (other_have && (!have || (want_first ? before(other, best) : before(best, other)))) best = other, have = true;
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh.keys[threadIdx.x >> 5] = have ? best : Key{0u, -1};  // id -1: empty warp
  __syncthreads();
  if (threadIdx.x == 0) {
    bool any = false;
    Key b = NONE;
    for (int wi = 0; wi < WARPS; ++wi) {
      const Key k = sh.keys[wi];
      if (k.id < 0) continue;
      if (!any || (want_first ? before(k, b) : before(b, k))) b = k, any = true;
    }
    sh.result = b;
  }
  __syncthreads();
  return sh.result;
}

// Per-thread 16-bin histograms (count, fp64 sum of fp32 weights), left per warp in sh.c / sh.w.
// digit(i, v, &d, &wgt) says whether element i takes part, and with which digit and weight.
template <typename A, typename F> __device__ void histogram(const A *row, int vocab, F digit, Shared &sh) {
  double w[BINS];
  unsigned c[BINS];
#pragma unroll
  for (int b = 0; b < BINS; ++b) w[b] = 0.0, c[b] = 0u;
  for (int i = threadIdx.x; i < vocab; i += THREADS) {
    int d;
    float wgt;
    if (!digit(i, lc::to_f(row[i]), d, wgt)) continue;
#pragma unroll
    for (int b = 0; b < BINS; ++b) {  // predicated adds: a register array indexed by constants only
      w[b] += d == b ? double(wgt) : 0.0;
      c[b] += d == b ? 1u : 0u;
    }
  }
#pragma unroll
  for (int b = 0; b < BINS; ++b) {
    w[b] = lc::warp_sum(w[b]);
    c[b] = lc::warp_sum(c[b]);
  }
  __syncthreads();  // sh.w / sh.c of a previous pass are consumed
  if ((threadIdx.x & 31) == 0)
#pragma unroll
    for (int b = 0; b < BINS; ++b) sh.w[threadIdx.x >> 5][b] = w[b], sh.c[threadIdx.x >> 5][b] = c[b];
  __syncthreads();
}

__device__ double bin_weight(const Shared &sh, int b) {
  double s = 0.0;
  for (int wi = 0; wi < WARPS; ++wi) s += sh.w[wi][b];
  return s;
}
__device__ unsigned bin_count(const Shared &sh, int b) {
  unsigned s = 0;
  for (int wi = 0; wi < WARPS; ++wi) s += sh.c[wi][b];
  return s;
}

// The first element e of the order, among those within `lim`, whose cumulative weight (everything
// before e, plus e) is >= target (> target when strict). Weight: 1 (counting) or
// expf((logit - top) / temp). found = false where the whole prefix does not reach the target.
template <typename A>
__device__ bool find_crossing(const A *row, int vocab, Key lim, bool mass, float top, float temp, double target,
                              bool strict, Shared &sh, Key &out) {
  __syncthreads();  // every thread has read what a previous step left in sh
  if (threadIdx.x == 0) sh.prefix = 0u, sh.before = 0.0, sh.found = 1;
  __syncthreads();
  for (int level = 7; level >= 0; --level) {
    const int shift = 4 * level;
    const uint32_t high = level == 7 ? 0u : (0xffffffffu << (shift + 4)), prefix = sh.prefix;
    histogram(row, vocab, [&](int i, float v, int &d, float &wgt) {
      const uint32_t k = order_key(v);
      if ((k & high) != prefix || !within(k, i, lim)) return false;
      d = int((k >> shift) & 15u);
      wgt = mass ? expf((v - top) / temp) : 1.0f;
      return true;
    }, sh);
    if (threadIdx.x == 0) {
      double cum = sh.before;
      int chosen = -1;
      for (int b = BINS - 1; b >= 0; --b) {  // larger digits come first in the order
        const unsigned n = bin_count(sh, b);
        if (n == 0) continue;
        const double wb = mass ? bin_weight(sh, b) : double(n);
        if (strict ? cum + wb > target : cum + wb >= target) {
          chosen = b, sh.bucket_count = n, sh.bucket_weight = wb;
          break;
        }
        cum += wb;
      }
      if (chosen < 0) sh.found = 0;
      else sh.prefix = prefix | (uint32_t(chosen) << shift), sh.before = cum;
    }
    __syncthreads();
    if (!sh.found) return false;
  }
  // sh.prefix is the crossing key; its bucket_count ties (equal weight each, ordered by id) follow
  // `before`: the crossing is the j-th of them.
  const uint32_t key = sh.prefix;
  const unsigned n = sh.bucket_count;
  const double each = sh.bucket_weight / n, need = target - sh.before;
  double jj = each > 0.0 ? (strict ? floor(need / each) + 1.0 : ceil(need / each)) : 1.0;
  unsigned j = unsigned(fmin(fmax(jj, 1.0), double(n)));
  // The j-th smallest id among the ties within lim, digit by digit (ids < 2^31).
  __syncthreads();  // all have read sh.prefix / bucket_* above
  if (threadIdx.x == 0) sh.prefix = 0u;
  __syncthreads();
  for (int level = 7; level >= 0; --level) {
    const int shift = 4 * level;
    const uint32_t high = level == 7 ? 0u : (0xffffffffu << (shift + 4)), prefix = sh.prefix;
    histogram(row, vocab, [&](int i, float v, int &d, float &wgt) {
      if (order_key(v) != key || (uint32_t(i) & high) != prefix || !within(key, i, lim)) return false;
      d = int((uint32_t(i) >> shift) & 15u);
      wgt = 0.0f;
      return true;
    }, sh);
    if (threadIdx.x == 0) {
      unsigned cum = 0;
      int b = 0;
      for (; b < BINS - 1; ++b) {  // smaller ids come first
        const unsigned c = bin_count(sh, b);
        if (cum + c >= j) break;
        cum += c;
      }
      sh.prefix = prefix | (uint32_t(b) << shift);
      sh.bucket_count = cum;  // ties before this digit
    }
    __syncthreads();
    j -= sh.bucket_count;
  }
  out = Key{key, int32_t(sh.prefix)};
  return true;
}

// Sum over the elements within lim of expf((logit - top) / temp), in fp64.
template <typename A>
__device__ double prefix_mass(const A *row, int vocab, Key lim, float top, float temp, Shared &sh) {
  double s = 0.0;
  for (int i = threadIdx.x; i < vocab; i += THREADS) {
    const float v = lc::to_f(row[i]);
    if (within(order_key(v), i, lim)) s += expf((v - top) / temp);
  }
  return lc::block_sum(s, sh.dsum);
}

// Per row r:  logprob = log_softmax(logits[r]);  temperature[r] <= 0: argmax (lowest id on ties);
// else p = softmax(logits / T), keep the top_k most likely (0 = all) within min_p of the top, then the shortest most-likely
// prefix whose mass reaches top_p * kept mass, and take the first kept token whose cumulative mass
// exceeds uniforms[r] * kept mass. Also the n_top largest logprobs (descending, ties: lower id).
template <typename A>
__global__ void __launch_bounds__(THREADS) sample_kernel(const A *logits, int vocab, const float *temperature,
                                                          const int32_t *top_k, const float *top_p,
                                                          const float *min_p, const float *uniforms, int n_top, int32_t *out_ids,
                                                          float *out_logprob, int32_t *out_top_ids,
                                                          float *out_top_logprobs) {
  __shared__ Shared sh;
  const int r = blockIdx.x;
  const A *row = logits + int64_t(r) * vocab;
  auto all = [](uint32_t, int32_t) { return true; };
  const Key best = block_extreme(row, vocab, true, all, sh);
  const float top = key_value(best.key);
  double s = 0.0;
  for (int i = threadIdx.x; i < vocab; i += THREADS) s += expf(lc::to_f(row[i]) - top);
  const double lse = double(top) + log(lc::block_sum(s, sh.dsum));

  int32_t id = best.id;
  const float temp = temperature[r];
  if (temp > 0.0f) {
    Key lim = NONE;
    const int k = top_k[r];
    if (k > 0 && k < vocab) find_crossing(row, vocab, NONE, false, top, temp, double(k), false, sh, lim);
    if (min_p[r] > 0.0f) {  // of those, the tokens within a factor min_p of the most likely: a prefix, named by its last
      const float threshold = lc::min_p_log_threshold(min_p[r]);
      lim = block_extreme(row, vocab, false, [&](uint32_t key, int32_t i) {
        return within(key, i, lim) && (key_value(key) - top) / temp >= threshold;
      }, sh);
    }
    const double mass = prefix_mass(row, vocab, lim, top, temp, sh);
    double kept_mass = mass;
    const float p = top_p[r];
    if (p < 1.0f) {
      Key cut;
      if (find_crossing(row, vocab, lim, true, top, temp, double(p) * mass, false, sh, cut)) {
        lim = cut;
        kept_mass = prefix_mass(row, vocab, lim, top, temp, sh);
      }
    }
    Key pick;
    if (find_crossing(row, vocab, lim, true, top, temp, double(uniforms[r]) * kept_mass, true, sh, pick))
      id = pick.id;
    else  // rounding left the target unreached: the last kept token, as the twin does
      id = block_extreme(row, vocab, false, [&](uint32_t key, int32_t i) { return within(key, i, lim); }, sh).id;
  }
  if (threadIdx.x == 0) {
    out_ids[r] = id;
    out_logprob[r] = float(double(lc::to_f(row[id])) - lse);
  }
  Key prev = best;
  for (int n = 0; n < n_top; ++n) {
    const Key e = n == 0 ? best : block_extreme(row, vocab, true, [&](uint32_t key, int32_t i) {
      return before(prev, Key{key, i});
    }, sh);
    if (threadIdx.x == 0) {
      out_top_ids[int64_t(r) * n_top + n] = e.id;
      out_top_logprobs[int64_t(r) * n_top + n] = float(double(lc::to_f(row[e.id])) - lse);
    }
    prev = e;
  }
}

}  // namespace

extern "C" lc_status lc_sample(lc_ctx *ctx, lc_dtype act, const void *logits, int32_t n_rows, int32_t vocab,
                               const float *temperature, const int32_t *top_k, const float *top_p,
                               const float *min_p, const float *uniforms, int32_t n_top, int32_t *out_ids, float *out_logprob,
                               int32_t *out_top_ids, float *out_top_logprobs) {
  LC_BEGIN(ctx);
  LC_REQUIRE_DTYPE(ctx, act);
  LC_REQUIRE(ctx, logits && temperature && top_k && top_p && min_p && uniforms && out_ids && out_logprob,
             "lc_sample: NULL pointer");
  LC_REQUIRE(ctx, n_rows >= 0 && vocab > 0 && n_top >= 0 && n_top <= vocab, "lc_sample: bad shape");
  LC_REQUIRE(ctx, n_top == 0 || (out_top_ids && out_top_logprobs), "lc_sample: NULL top-logprob output");
  if (n_top > MAX_TOP) return lc::fail(ctx, LC_ERR_UNSUPPORTED, "lc_sample: n_top %d > %d", n_top, MAX_TOP);
  if (n_rows == 0) return LC_OK;
  lc_dispatch(act, [&](auto at) {
    using A = decltype(at);
    sample_kernel<A><<<unsigned(n_rows), THREADS, 0, ctx->stream>>>(static_cast<const A *>(logits), vocab, temperature,
                                                                    top_k, top_p, min_p, uniforms, n_top, out_ids,
                                                                    out_logprob, out_top_ids, out_top_logprobs);
  });
  return lc::launched(ctx, "lc_sample");
}
