// Context lifetime, errors and the stream's sync of the CUDA backend (cuBLAS: cublas_loader.cu; memory and
// transfers: memory.cu).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common.cuh"

static thread_local std::string g_error;  // for failures without a context

lc_status lc::fail(lc_ctx *ctx, lc_status status, const char *fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  (ctx ? ctx->last_error : g_error) = buf;
  if (ctx && ctx->capture == lc_capture::recording) {
    abandon_capture(ctx);
    ctx->capture = lc_capture::failed;
    ctx->capture_status = status;
    ctx->capture_error = buf;
  }
  return status;
}

lc_status lc::refuse_while_recording(lc_ctx *ctx, const char *op) {
  ctx->last_error = std::string(op) +
                    ": not allowed while recording a graph (between lc_graph_begin and lc_graph_end only ops "
                    "are recorded; upload metadata before lc_graph_launch instead)";
  return LC_ERR_INVALID_ARGUMENT;
}

void lc::abandon_capture(lc_ctx *ctx) {
  cudaGraph_t partial = nullptr;
  cudaStreamEndCapture(ctx->stream, &partial);  // fails (and returns no graph) if the capture was invalidated
  if (partial) cudaGraphDestroy(partial);
  cudaGetLastError();
  ctx->capture = lc_capture::idle;
}

lc_status lc::begin(lc_ctx *ctx, const char *op) {
  if (!ctx) return fail(nullptr, LC_ERR_INVALID_ARGUMENT, "%s: context is NULL", op);
  ctx->last_error.clear();
  if (ctx->capture == lc_capture::failed) {
    ctx->last_error = std::string(op) + ": an op failed while recording a graph (" + ctx->capture_error +
                      "); call lc_graph_end to close the capture first";
    return LC_ERR_INVALID_ARGUMENT;
  }
  cudaError_t err = cudaSetDevice(ctx->device);  // ops may come from another host thread
  if (err != cudaSuccess)
    return fail(ctx, LC_ERR_BACKEND, "%s: cudaSetDevice(%d) failed: %s", op, ctx->device, cudaGetErrorString(err));
  return LC_OK;
}

lc_status lc::launched(lc_ctx *ctx, const char *op) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return fail(ctx, LC_ERR_BACKEND, "%s: kernel launch failed: %s (%d)", op, cudaGetErrorString(err), int(err));
  return LC_OK;
}

static const char *device_error_text(int code) {
  switch (code) {
    case LC_DEV_EMBED_ID: return "lc_embed: a token id outside [0, vocab) (its row was zero-filled)";
    case LC_DEV_KV_SLOT: return "lc_rope_store: a slot_mapping entry >= cache_slots (its keys and values were skipped)";
    case LC_DEV_ATTN_SHAPE:
      return "lc_attention: q_indptr / context_lens out of contract (not spanning n_tokens, n_q > max_q_len, "
             "context_len < n_q or > max_context_len, or more blocks than max_blocks_per_seq)";
    case LC_DEV_ATTN_SLOT: return "lc_attention: a block table entry points outside the cache (key skipped)";
    case LC_DEV_GATHER_ROW: return "lc_gather_rows: a row index outside [0, x_rows) (its output row was zero-filled)";
    case LC_DEV_LORA_SEGMENT:
      return "lc_lora_shrink/expand: a segment out of contract (slot >= n_slots, rank outside [0, max_rank], NULL "
             "matrix, or rows outside [0, n_tokens)); it was skipped";
    case LC_DEV_LOGIT_RULE:
      return "lc_logit_rules_apply: a mask row >= n_mask_rows, a count row >= n_count_rows or bias ids out of "
             "contract (outside [0, vocab) or not ascending); that rule was skipped";
    case LC_DEV_TOKEN_COUNT: return "lc_count_tokens: a row >= n_count_rows or an id outside [0, vocab) (not counted)";
    default: return "unknown device-side error";
  }
}

// Waits for the stream, then reports a CUDA failure or a device-side contract violation.
lc_status lc::finish(lc_ctx *ctx, const char *op) {
  LC_CUDA(ctx, cudaMemcpyAsync(ctx->host_error, ctx->dev_error, sizeof(int), cudaMemcpyDeviceToHost, ctx->stream));
  cudaError_t err = cudaStreamSynchronize(ctx->stream);
  if (err != cudaSuccess)
    return lc::fail(ctx, LC_ERR_BACKEND, "%s: an enqueued operation failed: %s (%d)", op, cudaGetErrorString(err), int(err));
  const int code = *ctx->host_error;
  if (code == LC_DEV_OK) return LC_OK;
  *ctx->host_error = 0;
  LC_CUDA(ctx, cudaMemsetAsync(ctx->dev_error, 0, sizeof(int), ctx->stream));
  return lc::fail(ctx, LC_ERR_INVALID_ARGUMENT, "%s: an earlier op saw out-of-contract device data: %s", op,
                  device_error_text(code));
}

static void release(lc_ctx *ctx) {
  cudaSetDevice(ctx->device);
  if (ctx->capture == lc_capture::recording) lc::abandon_capture(ctx);
  if (ctx->stream) cudaStreamSynchronize(ctx->stream);
  for (void *p : ctx->allocations) cudaFree(p);
  for (auto &a : ctx->host_allocations) cudaFreeHost(const_cast<void *>(a.first));
  if (ctx->cublas) lc::cublas().destroy(ctx->cublas);
  if (ctx->cublas_ws) cudaFree(ctx->cublas_ws);
  if (ctx->dev_error) cudaFree(ctx->dev_error);
  if (ctx->host_error) cudaFreeHost(ctx->host_error);
  if (ctx->stream) cudaStreamDestroy(ctx->stream);
  delete ctx;
}

extern "C" {

int32_t lc_abi_version(void) { return LC_ABI_VERSION; }
const char *lc_backend_name(void) { return "cuda"; }

lc_status lc_ctx_create(int32_t device, lc_ctx **out) {
  if (!out) return lc::fail(nullptr, LC_ERR_INVALID_ARGUMENT, "lc_ctx_create: out is NULL");
  *out = nullptr;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();  // reset the runtime's last error
    // the static runtime reports a missing driver as "insufficient": tell the two apart
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    if (driver == 0) return lc::fail(nullptr, LC_ERR_NO_DEVICE, "lc_ctx_create: no NVIDIA driver found");
    if (err == cudaErrorInsufficientDriver)
      return lc::fail(nullptr, LC_ERR_NO_DEVICE, "lc_ctx_create: the NVIDIA driver supports CUDA %d.%d, this build needs %d.%d",
                      driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    return lc::fail(nullptr, LC_ERR_NO_DEVICE, "lc_ctx_create: no usable CUDA device (%s)",
                    err != cudaSuccess ? cudaGetErrorString(err) : "cudaGetDeviceCount found 0 devices");
  }
  if (device < 0 || device >= count)
    return lc::fail(nullptr, LC_ERR_NO_DEVICE, "lc_ctx_create: device %d requested, %d present", device, count);
  lc_ctx *ctx = new (std::nothrow) lc_ctx();
  if (!ctx) return lc::fail(nullptr, LC_ERR_OUT_OF_MEMORY, "lc_ctx_create: out of host memory");
  ctx->device = device;
  auto bail = [&](lc_status st, const std::string &msg) {
    release(ctx);
    return lc::fail(nullptr, st, "lc_ctx_create: %s", msg.c_str());
  };
  auto cuda_failed = [&](const char *what, cudaError_t e) {
    return bail(e == cudaErrorMemoryAllocation ? LC_ERR_OUT_OF_MEMORY : LC_ERR_BACKEND,
                std::string(what) + " failed: " + cudaGetErrorString(e));
  };
  if ((err = cudaSetDevice(device)) != cudaSuccess) return cuda_failed("cudaSetDevice", err);
  if ((err = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking)) != cudaSuccess)
    return cuda_failed("cudaStreamCreate", err);
  if ((err = cudaDeviceGetAttribute(&ctx->sm_count, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess)
    return cuda_failed("cudaDeviceGetAttribute", err);
  int cc_major = 0;
  if ((err = cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device)) != cudaSuccess)
    return cuda_failed("cudaDeviceGetAttribute", err);
  // LORA_SERVE_CUDA_<name>=0 turns a speed-up off, to measure what it saves
  auto switched_off = [](const char *var) { const char *v = getenv(var); return v && strcmp(v, "0") == 0; };
  ctx->pdl = cc_major >= 9 && !switched_off("LORA_SERVE_CUDA_PDL");
  ctx->fuse_gemv = !switched_off("LORA_SERVE_CUDA_FUSE_GEMV");
  if ((err = cudaMalloc(&ctx->dev_error, sizeof(int))) != cudaSuccess) return cuda_failed("cudaMalloc", err);
  if ((err = cudaMallocHost(&ctx->host_error, sizeof(int))) != cudaSuccess) return cuda_failed("cudaMallocHost", err);
  *ctx->host_error = 0;
  if ((err = cudaMemsetAsync(ctx->dev_error, 0, sizeof(int), ctx->stream)) != cudaSuccess)
    return cuda_failed("cudaMemset", err);

  const lc_cublas &cb = lc::cublas();
  if (!cb.create) return bail(LC_ERR_BACKEND, lc::cublas_error());
  int st = cb.create(&ctx->cublas);
  if (st != 0) {
    ctx->cublas = nullptr;
    return bail(LC_ERR_BACKEND, std::string("cublasCreate failed: ") + lc::cublas_status_text(st));
  }
  if ((st = cb.set_stream(ctx->cublas, ctx->stream)) != 0)
    return bail(LC_ERR_BACKEND, std::string("cublasSetStream failed: ") + lc::cublas_status_text(st));
  if (cb.set_workspace) {
    if ((err = cudaMalloc(&ctx->cublas_ws, LC_CUBLAS_WORKSPACE)) != cudaSuccess) return cuda_failed("cudaMalloc", err);
    if ((st = cb.set_workspace(ctx->cublas, ctx->cublas_ws, LC_CUBLAS_WORKSPACE)) != 0)
      return bail(LC_ERR_BACKEND, std::string("cublasSetWorkspace failed: ") + lc::cublas_status_text(st));
  }
  if ((err = cudaStreamSynchronize(ctx->stream)) != cudaSuccess) return cuda_failed("cudaStreamSynchronize", err);
  *out = ctx;
  return LC_OK;
}

void lc_ctx_destroy(lc_ctx *ctx) {
  if (ctx) release(ctx);
}

const char *lc_last_error(const lc_ctx *ctx) { return ctx ? ctx->last_error.c_str() : g_error.c_str(); }

lc_status lc_sync(lc_ctx *ctx) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_sync");
  return lc::finish(ctx, "lc_sync");
}

}  // extern "C"
