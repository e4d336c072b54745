#include "emu.h"

#include <sys/mman.h>

#include <map>
#include <string>
#include <vector>

extern "C" void emu_switch(void **save_sp, void *new_sp);
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
)");

namespace emu {

float h2f(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0x1f) bits = sign | 0x7f800000u | (mant << 13);
  else if (exp != 0) bits = sign | ((exp + 112) << 23) | (mant << 13);
  else if (mant == 0) bits = sign;
  else { int e = -1; do { mant <<= 1; ++e; } while (!(mant & 0x400)); bits = sign | uint32_t(112 - e) << 23 | ((mant & 0x3ff) << 13); }
  float f; memcpy(&f, &bits, 4); return f;
}
uint16_t f2h(float f) {
  uint32_t x; memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, absx = x & 0x7fffffff;
  if (absx > 0x7f800000) return uint16_t(sign | 0x7e00);
  if (absx >= 0x477ff000) return uint16_t(sign | 0x7c00);
  if (absx < 0x38800000) { float a; memcpy(&a, &absx, 4); return uint16_t(sign | uint32_t(std::nearbyint(a * 16777216.0f))); }
  uint32_t mant = absx & 0x7fffff, exp = (absx >> 23) - 112, h = (exp << 10) | (mant >> 13), rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
  return uint16_t(sign | h);
}

enum State { RUN, WAIT_BLOCK, WAIT_WARP, DONE };
struct Fiber {
  uint3 tid;
  int index;
  void *sp;
  char *stack;
  State state;
};
Fiber *cur = nullptr;
uint3 block_idx;
dim3 block_dim, grid_dim;
static void *sched_sp;
static std::vector<Fiber> fibers;
static const std::function<void()> *body_fn;
static int live, block_arrived;
struct Warp { int live, arrived, gen; uint64_t slot[2][32]; };
static std::vector<Warp> warps;
static std::vector<char> dyn;
static std::string kernel_error;
constexpr size_t STACK = 256 << 10;

const uint3 &tid() { return cur->tid; }
int lane() { return cur->index & 31; }
int thread_index() { return cur->index; }
// Dynamic shared memory: 128-byte aligned, followed by a guard checked after each block.
constexpr size_t GUARD = 256;
static size_t dyn_bytes = 0;
static char *dyn_base() { return reinterpret_cast<char *>((reinterpret_cast<uintptr_t>(dyn.data()) + 127) & ~uintptr_t(127)); }
void *dyn_smem() { return dyn_base(); }
static std::map<const void *, int> smem_limits;
void set_max_dyn_smem(const void *fn, int bytes) { smem_limits[fn] = bytes; }
int max_dyn_smem(const void *fn) { auto it = smem_limits.find(fn); return it == smem_limits.end() ? int(SMEM_DEFAULT) : it->second; }

[[noreturn]] static void die(const char *what) {
  fprintf(stderr, "EMU ERROR: %s (block %u,%u,%u thread %d)\n", what, block_idx.x, block_idx.y, block_idx.z, cur ? cur->index : -1);
  abort();
}

static void yield() { emu_switch(&cur->sp, sched_sp); }

static void release_block() {
  block_arrived = 0;
  for (auto &f : fibers) if (f.state == WAIT_BLOCK) f.state = RUN;
}
void syncthreads() {
  if (++block_arrived == live) { release_block(); return; }
  cur->state = WAIT_BLOCK;
  yield();
}

uint64_t exchange(uint64_t v, int src) {
  Warp &w = warps[cur->index / 32];
  if (w.live != 32 || int(block_dim.x * block_dim.y * block_dim.z) % 32) die("warp shuffle with a partial warp");
  const int buf = w.gen & 1, ln = cur->index & 31;
  w.slot[buf][ln] = v;
  if (++w.arrived == w.live) {
    w.arrived = 0;
    ++w.gen;
    for (int i = 0; i < 32; ++i) { Fiber &f = fibers[(cur->index & ~31) + i]; if (f.state == WAIT_WARP) f.state = RUN; }
  } else {
    cur->state = WAIT_WARP;
    yield();
  }
  return w.slot[buf][src];
}

static void trampoline() {
  (*body_fn)();
  cur->state = DONE;
  --live;
  Warp &w = warps[cur->index / 32];
  --w.live;
  if (w.arrived > 0) die("a lane exited while its warp waits in a shuffle");
  if (block_arrived > 0 && block_arrived == live) release_block();
  emu_switch(&cur->sp, sched_sp);
  die("resumed a finished fiber");
}

static void run_block(const std::function<void()> &body) {
  const int n = int(block_dim.x * block_dim.y * block_dim.z);
  if (int(fibers.size()) < n) {
    size_t old = fibers.size();
    fibers.resize(n);
    for (size_t i = old; i < fibers.size(); ++i)
      fibers[i].stack = static_cast<char *>(mmap(nullptr, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  }
  fibers.resize(n);
  warps.assign((n + 31) / 32, Warp{});
  for (int w = 0; w < int(warps.size()); ++w) warps[w].live = std::min(32, n - 32 * w);
  live = n;
  block_arrived = 0;
  body_fn = &body;
  for (int i = 0; i < n; ++i) {
    Fiber &f = fibers[i];
    f.index = i;
    f.tid = {unsigned(i) % block_dim.x, unsigned(i) / block_dim.x % block_dim.y, unsigned(i) / (block_dim.x * block_dim.y)};
    f.state = RUN;
    uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + STACK) & ~uintptr_t(15);
    void **sp = reinterpret_cast<void **>(top);
    *--sp = nullptr;                                        // fake return address of the trampoline
    *--sp = reinterpret_cast<void *>(&trampoline);          // emu_switch's ret
    for (int r = 0; r < 6; ++r) *--sp = nullptr;            // rbp rbx r12-r15
    f.sp = sp;
  }
  for (;;) {
    bool ran = false, all_done = true;
    for (int i = 0; i < n; ++i) {
      Fiber &f = fibers[i];
      if (f.state != DONE) all_done = false;
      if (f.state != RUN) continue;
      ran = true;
      cur = &f;
      emu_switch(&sched_sp, f.sp);
      cur = nullptr;
    }
    if (all_done) break;
    if (!ran) die("deadlock: every live thread waits at a barrier that cannot complete (divergent __syncthreads?)");
  }
}

void run_grid(const Cfg &c, const std::function<void()> &body) {
  block_dim = c.block;
  grid_dim = c.grid;
  dyn_bytes = c.smem;
  dyn.assign(c.smem + 128 + GUARD, 0);
  memset(dyn_base() + dyn_bytes, 0xA5, GUARD);
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.block.x * c.block.y * c.block.z > 1024) {
    kernel_error = "invalid launch configuration";
    return;
  }
  for (unsigned z = 0; z < c.grid.z; ++z)
    for (unsigned y = 0; y < c.grid.y; ++y)
      for (unsigned x = 0; x < c.grid.x; ++x) {
        block_idx = {x, y, z};
        run_block(body);
        for (size_t g = 0; g < GUARD; ++g)
          if (static_cast<unsigned char>(dyn_base()[dyn_bytes + g]) != 0xA5) die("write past the end of dynamic shared memory");
      }
}

void launch_error(const char *why) {
  fprintf(stderr, "EMU launch error: %s\n", why);
  kernel_error = why;
}

// ---- streams and graphs ----
struct Recording { std::vector<std::function<void()>> ops; };
static Recording *capturing = nullptr;
void enqueue(cudaStream_t, std::function<void()> fn) {
  if (capturing) capturing->ops.push_back(std::move(fn));
  else fn();
}

}  // namespace emu

struct emu_graph { std::vector<std::function<void()>> ops; };
static cudaError_t last_error = cudaSuccess;

cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int *v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  if (!emu::kernel_error.empty()) { emu::kernel_error.clear(); return cudaErrorInvalidValue; }
  cudaError_t e = last_error; last_error = cudaSuccess; return e;
}
const char *cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = reinterpret_cast<cudaStream_t>(new int(0)); return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { delete reinterpret_cast<int *>(s); return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu::capturing ? cudaErrorStreamCaptureInvalidated : cudaSuccess; }
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrComputeCapabilityMajor ? 9 : 132;  // an H100's
  return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t n) { *p = aligned_alloc(256, (n + 255) / 256 * 256); return *p ? cudaSuccess : cudaErrorMemoryAllocation; }
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMallocHost(void **p, size_t n) { return cudaMalloc(p, n); }
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned) { return cudaMalloc(p, n); }
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { *f = size_t(1) << 34; *t = size_t(1) << 35; return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t st) {
  emu::enqueue(st, [=] { memmove(d, s, n); });
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t st) {
  emu::enqueue(st, [=] { memset(d, v, n); });
  return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
  if (emu::capturing) return cudaErrorIllegalState;
  emu::capturing = new emu::Recording();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
  if (!emu::capturing) { *g = nullptr; return cudaErrorIllegalState; }
  *g = new emu_graph{std::move(emu::capturing->ops)};
  delete emu::capturing;
  emu::capturing = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) { *e = new emu_graph{g->ops}; return cudaSuccess; }
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t st) {
  if (emu::capturing) return cudaErrorStreamCaptureInvalidated;
  for (auto &op : e->ops) emu::enqueue(st, op);
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete e; return cudaSuccess; }
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }

// ---- a fake cuBLAS: column-major GemmEx, fp32 accumulation ----
static float ld(const void *p, int t, int64_t i) {
  if (t == 0) return static_cast<const float *>(p)[i];
  uint16_t b = static_cast<const uint16_t *>(p)[i];
  return t == 2 ? emu::h2f(b) : emu::b2f(b);
}
static void st(void *p, int t, int64_t i, float v) {
  if (t == 0) static_cast<float *>(p)[i] = v;
  else static_cast<uint16_t *>(p)[i] = t == 2 ? emu::f2h(v) : emu::f2b(v);
}
static int fake_create(void **h) { *h = new int(0); return 0; }
static int fake_destroy(void *h) { delete static_cast<int *>(h); return 0; }
static int fake_set_stream(void *, cudaStream_t) { return 0; }
static int fake_set_workspace(void *, void *, size_t) { return 0; }
static int fake_gemm(void *, int ta, int tb, int m, int n, int k, const void *alpha, const void *A, int at, int lda, const void *B,
                     int bt, int ldb, const void *beta, void *C, int ct, int ldc, int, int) {
  const float al = *static_cast<const float *>(alpha), be = *static_cast<const float *>(beta);
  emu::enqueue(nullptr, [=] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float s = 0;
        for (int l = 0; l < k; ++l) {
          const float a = ld(A, at, ta == 0 ? i + int64_t(l) * lda : l + int64_t(i) * lda);
          const float b = ld(B, bt, tb == 0 ? l + int64_t(j) * ldb : j + int64_t(l) * ldb);
          s += a * b;
        }
        const int64_t ci = i + int64_t(j) * ldc;
        st(C, ct, ci, be == 0 ? al * s : al * s + be * ld(C, ct, ci));
      }
  });
  return 0;
}
static const char *fake_status(int) { return "fake cuBLAS"; }
extern "C" void *emu_dlopen(const char *, int) noexcept { static int h; return &h; }
extern "C" void *emu_dlsym(void *, const char *name) noexcept {
  std::string n(name);
  if (n == "cublasCreate_v2") return reinterpret_cast<void *>(&fake_create);
  if (n == "cublasDestroy_v2") return reinterpret_cast<void *>(&fake_destroy);
  if (n == "cublasSetStream_v2") return reinterpret_cast<void *>(&fake_set_stream);
  if (n == "cublasSetWorkspace_v2") return reinterpret_cast<void *>(&fake_set_workspace);
  if (n == "cublasGemmEx") return reinterpret_cast<void *>(&fake_gemm);
  if (n == "cublasGetStatusString") return reinterpret_cast<void *>(&fake_status);
  return nullptr;
}
extern "C" char *emu_dlerror() noexcept { return nullptr; }
