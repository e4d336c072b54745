// Device and pinned host memory, and the copies between them, of the CUDA backend (see loracuda.h).
#include <cstring>

#include "common.cuh"

extern "C" {

lc_status lc_mem_info(lc_ctx *ctx, uint64_t *free_bytes, uint64_t *total_bytes) {
  LC_BEGIN(ctx);
  LC_REQUIRE(ctx, free_bytes && total_bytes, "lc_mem_info: NULL output");
  size_t f = 0, t = 0;
  LC_CUDA(ctx, cudaMemGetInfo(&f, &t));
  *free_bytes = f;
  *total_bytes = t;
  return LC_OK;
}

lc_status lc_alloc(lc_ctx *ctx, uint64_t bytes, void **out) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_alloc");
  LC_REQUIRE(ctx, out, "lc_alloc: out is NULL");
  *out = nullptr;
  void *p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes ? size_t(bytes) : 1);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return lc::fail(ctx, err == cudaErrorMemoryAllocation ? LC_ERR_OUT_OF_MEMORY : LC_ERR_BACKEND,
                    "lc_alloc: cannot allocate %llu bytes: %s", (unsigned long long)bytes, cudaGetErrorString(err));
  }
  err = cudaMemsetAsync(p, 0, bytes ? size_t(bytes) : 1, ctx->stream);  // ordered before any later op
  if (err != cudaSuccess) {
    cudaFree(p);
    return lc::fail(ctx, LC_ERR_BACKEND, "lc_alloc: zero-fill failed: %s", cudaGetErrorString(err));
  }
  ctx->allocations.insert(p);
  *out = p;
  return LC_OK;
}

lc_status lc_free(lc_ctx *ctx, void *ptr) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_free");
  if (!ptr) return LC_OK;
  LC_REQUIRE(ctx, ctx->allocations.count(ptr) == 1, "lc_free: %p was not allocated by this context", ptr);
  LC_CUDA(ctx, cudaStreamSynchronize(ctx->stream));  // enqueued ops may still use it
  ctx->allocations.erase(ptr);
  LC_CUDA(ctx, cudaFree(ptr));
  return LC_OK;
}

lc_status lc_host_alloc(lc_ctx *ctx, uint64_t bytes, void **out) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_host_alloc");
  LC_REQUIRE(ctx, out, "lc_host_alloc: out is NULL");
  *out = nullptr;
  void *p = nullptr;
  const size_t n = bytes ? size_t(bytes) : 1;
  cudaError_t err = cudaHostAlloc(&p, n, cudaHostAllocDefault);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return lc::fail(ctx, err == cudaErrorMemoryAllocation ? LC_ERR_OUT_OF_MEMORY : LC_ERR_BACKEND,
                    "lc_host_alloc: cannot allocate %llu bytes of page-locked host memory: %s",
                    (unsigned long long)bytes, cudaGetErrorString(err));
  }
  std::memset(p, 0, n);
  ctx->host_allocations.emplace(p, uint64_t(n));
  *out = p;
  return LC_OK;
}

lc_status lc_host_free(lc_ctx *ctx, void *ptr) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_host_free");
  if (!ptr) return LC_OK;
  LC_REQUIRE(ctx, ctx->host_allocations.count(ptr) == 1, "lc_host_free: %p was not lc_host_alloc'd on this context", ptr);
  LC_CUDA(ctx, cudaStreamSynchronize(ctx->stream));  // pinned memory is device-visible: enqueued work may read it
  ctx->host_allocations.erase(ptr);
  LC_CUDA(ctx, cudaFreeHost(ptr));
  return LC_OK;
}

lc_status lc_upload(lc_ctx *ctx, void *dst, const void *src_host, uint64_t bytes) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_upload");
  LC_REQUIRE(ctx, (dst && src_host) || bytes == 0, "lc_upload: NULL pointer");
  if (!bytes) return LC_OK;
  LC_CUDA(ctx, cudaMemcpyAsync(dst, src_host, size_t(bytes), cudaMemcpyHostToDevice, ctx->stream));
  // The host buffer may be reused on return, even where it is pinned (then the copy is truly async).
  LC_CUDA(ctx, cudaStreamSynchronize(ctx->stream));
  return LC_OK;
}

lc_status lc_upload_async(lc_ctx *ctx, void *dst, const void *src_host, uint64_t bytes) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_upload_async");
  LC_REQUIRE(ctx, (dst && src_host) || bytes == 0, "lc_upload_async: NULL pointer");
  if (!bytes) return LC_OK;
  LC_REQUIRE(ctx, lc::in_host_allocation(ctx->host_allocations, src_host, bytes),
             "lc_upload_async: %llu bytes at %p are not inside one lc_host_alloc'd buffer", (unsigned long long)bytes,
             src_host);
  LC_CUDA(ctx, cudaMemcpyAsync(dst, src_host, size_t(bytes), cudaMemcpyHostToDevice, ctx->stream));
  return LC_OK;
}

lc_status lc_download(lc_ctx *ctx, void *dst_host, const void *src, uint64_t bytes) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_download");
  LC_REQUIRE(ctx, (dst_host && src) || bytes == 0, "lc_download: NULL pointer");
  if (bytes) LC_CUDA(ctx, cudaMemcpyAsync(dst_host, src, size_t(bytes), cudaMemcpyDeviceToHost, ctx->stream));
  return lc::finish(ctx, "lc_download");
}

lc_status lc_memset(lc_ctx *ctx, void *dst, int32_t byte_value, uint64_t bytes) {
  LC_BEGIN(ctx);
  LC_REQUIRE(ctx, dst || bytes == 0, "lc_memset: NULL pointer");
  if (bytes) LC_CUDA(ctx, cudaMemsetAsync(dst, byte_value, size_t(bytes), ctx->stream));
  return LC_OK;
}

lc_status lc_copy(lc_ctx *ctx, void *dst, const void *src, uint64_t bytes) {
  LC_BEGIN(ctx);
  LC_REQUIRE(ctx, (dst && src) || bytes == 0, "lc_copy: NULL pointer");
  if (bytes) LC_CUDA(ctx, cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDeviceToDevice, ctx->stream));
  return LC_OK;
}

}  // extern "C"
