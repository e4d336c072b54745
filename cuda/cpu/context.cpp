// Context lifetime, errors and memory of the CPU twin: "device" memory is host memory.
#include <unistd.h>

#include <cstdlib>

#include "common.h"

static thread_local std::string g_error;  // for failures without a context

lc_status lc::fail(lc_ctx *ctx, lc_status status, const char *fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  (ctx ? ctx->last_error : g_error) = buf;
  return status;
}

extern "C" {

int32_t lc_abi_version(void) { return LC_ABI_VERSION; }
const char *lc_backend_name(void) { return "cpu"; }

lc_status lc_ctx_create(int32_t device, lc_ctx **out) {
  (void)device;
  if (!out) return lc::fail(nullptr, LC_ERR_INVALID_ARGUMENT, "lc_ctx_create: out is NULL");
  *out = new (std::nothrow) lc_ctx();
  if (!*out) return lc::fail(nullptr, LC_ERR_OUT_OF_MEMORY, "lc_ctx_create: out of host memory");
  return LC_OK;
}

void lc_ctx_destroy(lc_ctx *ctx) {
  if (!ctx) return;
  for (void *p : ctx->allocations) std::free(p);
  for (auto &a : ctx->host_allocations) std::free(const_cast<void *>(a.first));
  delete ctx;
}

const char *lc_last_error(const lc_ctx *ctx) { return ctx ? ctx->last_error.c_str() : g_error.c_str(); }

lc_status lc_mem_info(lc_ctx *ctx, uint64_t *free_bytes, uint64_t *total_bytes) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, free_bytes && total_bytes, "lc_mem_info: NULL output");
  uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  *free_bytes = uint64_t(sysconf(_SC_AVPHYS_PAGES)) * page;
  *total_bytes = uint64_t(sysconf(_SC_PHYS_PAGES)) * page;
  return LC_OK;
}

lc_status lc_alloc(lc_ctx *ctx, uint64_t bytes, void **out) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, out, "lc_alloc: out is NULL");
  *out = std::calloc(1, bytes ? size_t(bytes) : 1);
  if (!*out) return lc::fail(ctx, LC_ERR_OUT_OF_MEMORY, "lc_alloc: cannot allocate %llu bytes", (unsigned long long)bytes);
  ctx->allocations.insert(*out);
  return LC_OK;
}

lc_status lc_free(lc_ctx *ctx, void *ptr) {
  LC_REQUIRE_CTX(ctx);
  if (!ptr) return LC_OK;
  LC_REQUIRE(ctx, ctx->allocations.erase(ptr) == 1, "lc_free: %p was not allocated by this context", ptr);
  std::free(ptr);
  return LC_OK;
}

// Plain host memory (there is nothing to pin for), cache-line aligned like the GPU's allocations.
lc_status lc_host_alloc(lc_ctx *ctx, uint64_t bytes, void **out) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, out, "lc_host_alloc: out is NULL");
  *out = nullptr;
  const size_t n = bytes ? size_t(bytes) : 1;
  void *p = nullptr;
  if (posix_memalign(&p, 64, n) != 0 || !p)
    return lc::fail(ctx, LC_ERR_OUT_OF_MEMORY, "lc_host_alloc: cannot allocate %llu bytes", (unsigned long long)bytes);
  std::memset(p, 0, n);
  ctx->host_allocations.emplace(p, uint64_t(n));
  *out = p;
  return LC_OK;
}

lc_status lc_host_free(lc_ctx *ctx, void *ptr) {
  LC_REQUIRE_CTX(ctx);
  if (!ptr) return LC_OK;
  LC_REQUIRE(ctx, ctx->host_allocations.erase(ptr) == 1, "lc_host_free: %p was not lc_host_alloc'd on this context", ptr);
  std::free(ptr);
  return LC_OK;
}

lc_status lc_upload(lc_ctx *ctx, void *dst, const void *src_host, uint64_t bytes) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, (dst && src_host) || bytes == 0, "lc_upload: NULL pointer");
  if (bytes) std::memcpy(dst, src_host, size_t(bytes));
  return LC_OK;
}

// The same contract as the GPU's (checked, so CI catches a caller passing pageable memory); copied at once.
lc_status lc_upload_async(lc_ctx *ctx, void *dst, const void *src_host, uint64_t bytes) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, (dst && src_host) || bytes == 0, "lc_upload_async: NULL pointer");
  if (!bytes) return LC_OK;
  LC_REQUIRE(ctx, lc::in_host_allocation(ctx->host_allocations, src_host, bytes),
             "lc_upload_async: %llu bytes at %p are not inside one lc_host_alloc'd buffer", (unsigned long long)bytes,
             src_host);
  std::memcpy(dst, src_host, size_t(bytes));
  return LC_OK;
}

lc_status lc_download(lc_ctx *ctx, void *dst_host, const void *src, uint64_t bytes) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, (dst_host && src) || bytes == 0, "lc_download: NULL pointer");
  if (bytes) std::memcpy(dst_host, src, size_t(bytes));
  return LC_OK;
}

lc_status lc_memset(lc_ctx *ctx, void *dst, int32_t byte_value, uint64_t bytes) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, dst || bytes == 0, "lc_memset: NULL pointer");
  if (bytes) std::memset(dst, byte_value, size_t(bytes));
  return LC_OK;
}

lc_status lc_copy(lc_ctx *ctx, void *dst, const void *src, uint64_t bytes) {
  LC_REQUIRE_CTX(ctx);
  LC_REQUIRE(ctx, (dst && src) || bytes == 0, "lc_copy: NULL pointer");
  if (bytes) std::memmove(dst, src, size_t(bytes));
  return LC_OK;
}

lc_status lc_sync(lc_ctx *ctx) {
  LC_REQUIRE_CTX(ctx);
  return LC_OK;
}

}  // extern "C"
