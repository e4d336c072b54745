// Emulated nvcuda::wmma (16x16x16; half / bf16 inputs, fp32 accumulators) for the fiber emulator.
//
// Every thread's fragment holds the WHOLE 16x16 tile (num_elements = 256), but in a lane-dependent
// order: x[i] is tile element pos(lane, i) = (37 i + 11 lane) mod 256 (row-major in the tile), so a
// kernel that assumes some layout of x[] (instead of treating it elementwise) goes wrong here.
//  - load_matrix_sync: each lane reads the whole tile from memory when IT arrives (no barrier), so a
//    lane that loads before other lanes' stores (a missing __syncwarp) holds a stale copy.
//  - store_matrix_sync: each lane writes only the tile elements it "owns" (element p by lane p % 32),
//    from its own copy, when it arrives (no barrier).
//  - mma_sync: a warp barrier (all 32 lanes must call it); every lane's a, b, c must equal lane 0's
//    element for element (else abort: a race, a divergent load, or a lane-dependent elementwise op);
//    lane 0 computes D = A B + C in fp32 (products of half / bf16 inputs are exact) for the warp.
// Alignment (256-bit pointers) and ldm (multiple of 16 bytes) are checked as the CUDA docs require.
#pragma once
#include <string>

#include "emu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> class fragment {
 public:
  enum { num_elements = 256 };
  T x[256];
};

namespace detail {
[[noreturn]] inline void fail(const char *what) {
  fprintf(stderr, "EMU WMMA ERROR: %s (block %u,%u,%u thread %d)\n", what, emu::block_idx.x, emu::block_idx.y,
          emu::block_idx.z, emu::thread_index());
  abort();
}
inline int pos(int lane, int i) { return (37 * i + 11 * lane) & 255; }
inline int index_of(int lane, int p) { return (173 * (p - 11 * lane)) & 255; }  // 37 * 173 = 1 mod 256
inline float to_f(float v) { return v; }
inline float to_f(__half v) { return __half2float(v); }
inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T> void check(const T *p, unsigned ldm, const char *op) {
  if (reinterpret_cast<uintptr_t>(p) % 32) fail((std::string(op) + ": pointer not 256-bit aligned").c_str());
  if ((ldm * sizeof(T)) % 16) fail((std::string(op) + ": ldm not a multiple of 16 bytes").c_str());
  if (ldm < 16) fail((std::string(op) + ": ldm under 16").c_str());
}
// Tile element (r, c) of a row- or column-major matrix at p with leading dimension ldm.
inline int64_t offset(bool row_major, int r, int c, unsigned ldm) {
  return row_major ? int64_t(r) * ldm + c : int64_t(c) * ldm + r;
}
template <class L> constexpr bool is_row() { return std::is_same<L, row_major>::value; }
}  // namespace detail

template <class Use, class T, class L>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
  static_assert(!std::is_same<Use, accumulator>::value, "accumulators take a layout_t");
  detail::check(p, ldm, "load_matrix_sync");
  const int lane = emu::lane();
  for (int i = 0; i < 256; ++i) {
    const int e = detail::pos(lane, i);
    f.x[i] = p[detail::offset(detail::is_row<L>(), e / 16, e % 16, ldm)];
  }
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm, layout_t l) {
  detail::check(p, ldm, "load_matrix_sync (accumulator)");
  const int lane = emu::lane();
  for (int i = 0; i < 256; ++i) {
    const int e = detail::pos(lane, i);
    f.x[i] = p[detail::offset(l == mem_row_major, e / 16, e % 16, ldm)];
  }
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t l) {
  detail::check(p, ldm, "store_matrix_sync");
  const int lane = emu::lane();
  for (int e = lane; e < 256; e += 32) p[detail::offset(l == mem_row_major, e / 16, e % 16, ldm)] = f.x[detail::index_of(lane, e)];
}

template <class Use, class T, class L, class V> void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, const V &v) {
  for (int i = 0; i < 256; ++i) f.x[i] = T(v);
}

namespace detail {
template <class T> struct Canon {
  T a[256], b[256];  // tile order (row-major), raw
  float c[256];
};
struct WarpMma {
  int parity = 0;
  float d[2][256];
};
inline WarpMma warp_mma[32];
}  // namespace detail

template <class T, class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, T, LA> &a,
              const fragment<matrix_b, 16, 16, 16, T, LB> &b, const fragment<accumulator, 16, 16, 16, float> &c) {
  static_assert(sizeof(T) == 2, "half / bf16 inputs");
  const int lane = emu::lane(), warp = emu::thread_index() / 32;
  detail::Canon<T> mine;
  for (int i = 0; i < 256; ++i) {
    const int e = detail::pos(lane, i);
    mine.a[e] = a.x[i];
    mine.b[e] = b.x[i];
    mine.c[e] = c.x[i];
  }
  // barrier 1: every lane's inputs are final; everyone sees lane 0's copy
  const auto *ref = reinterpret_cast<const detail::Canon<T> *>(emu::exchange(reinterpret_cast<uint64_t>(&mine), 0));
  if (memcmp(&mine, ref, sizeof mine) != 0)
    detail::fail("mma_sync: this lane's fragments differ from lane 0's (race, divergent load or lane-dependent op)");
  detail::WarpMma &w = detail::warp_mma[warp];
  if (lane == 0) {
    float fa[256], fb[256];
    for (int e = 0; e < 256; ++e) fa[e] = detail::to_f(mine.a[e]), fb[e] = detail::to_f(mine.b[e]);
    w.parity ^= 1;
    float *out = w.d[w.parity];
    for (int r = 0; r < 16; ++r)
      for (int n = 0; n < 16; ++n) {
        float s = mine.c[r * 16 + n];
        for (int k = 0; k < 16; ++k) s += fa[r * 16 + k] * fb[k * 16 + n];
        out[r * 16 + n] = s;
      }
  }
  // barrier 2: lane 0 computed the warp's result (lane 0's `mine` stays alive until here)
  const int parity = int(emu::exchange(lane == 0 ? uint64_t(w.parity) : 0, 0));
  const float *out = w.d[parity];
  for (int i = 0; i < 256; ++i) d.x[i] = out[detail::pos(lane, i)];
}

}  // namespace wmma
}  // namespace nvcuda
