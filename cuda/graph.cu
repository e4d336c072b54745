// CUDA graphs: record the ops enqueued on the context's stream once, replay them with one launch.
//
// Capture mode Relaxed: libraries may make lazy, capture-unsafe runtime calls (module loading, cuBLAS
// setup) on first use, and those must not invalidate the capture; our own unsafe entry points
// (upload, download, sync, alloc, free, host alloc / free) refuse while recording instead. cuBLAS captures cleanly with
// the workspace the context sets (cublasSetWorkspace after cublasSetStream, which would reset it).
#include "common.cuh"

struct lc_graph {
  cudaGraphExec_t exec = nullptr;
};

extern "C" {

lc_status lc_graph_begin(lc_ctx *ctx) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_graph_begin");
  LC_CUDA(ctx, cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeRelaxed));
  ctx->capture = lc_capture::recording;
  ctx->capture_status = LC_OK;
  ctx->capture_error.clear();
  return LC_OK;
}

lc_status lc_graph_end(lc_ctx *ctx, lc_graph **out) {
  if (!ctx) return lc::fail(nullptr, LC_ERR_INVALID_ARGUMENT, "lc_graph_end: context is NULL");
  ctx->last_error.clear();
  if (!out) {
    if (ctx->capture == lc_capture::recording) lc::abandon_capture(ctx);
    ctx->capture = lc_capture::idle;
    return lc::fail(ctx, LC_ERR_INVALID_ARGUMENT, "lc_graph_end: out is NULL (the capture was dropped)");
  }
  *out = nullptr;
  if (ctx->capture == lc_capture::failed) {
    ctx->capture = lc_capture::idle;
    return lc::fail(ctx, ctx->capture_status, "lc_graph_end: the capture was abandoned: %s", ctx->capture_error.c_str());
  }
  LC_REQUIRE(ctx, ctx->capture == lc_capture::recording, "lc_graph_end: no lc_graph_begin before it");
  cudaError_t err = cudaSetDevice(ctx->device);
  if (err != cudaSuccess) return lc::fail(ctx, LC_ERR_BACKEND, "lc_graph_end: cudaSetDevice failed: %s", cudaGetErrorString(err));
  cudaGraph_t graph = nullptr;
  err = cudaStreamEndCapture(ctx->stream, &graph);
  ctx->capture = lc_capture::idle;
  if (err != cudaSuccess || !graph) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    return lc::fail(ctx, LC_ERR_BACKEND, "lc_graph_end: cudaStreamEndCapture failed: %s (%d)", cudaGetErrorString(err),
                    int(err));
  }
  cudaGraphExec_t exec = nullptr;
  err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return lc::fail(ctx, err == cudaErrorMemoryAllocation ? LC_ERR_OUT_OF_MEMORY : LC_ERR_BACKEND,
                    "lc_graph_end: cudaGraphInstantiate failed: %s (%d)", cudaGetErrorString(err), int(err));
  }
  lc_graph *g = new (std::nothrow) lc_graph();
  if (!g) {
    cudaGraphExecDestroy(exec);
    return lc::fail(ctx, LC_ERR_OUT_OF_MEMORY, "lc_graph_end: out of host memory");
  }
  g->exec = exec;
  *out = g;
  return LC_OK;
}

lc_status lc_graph_launch(lc_ctx *ctx, lc_graph *graph) {
  LC_BEGIN(ctx);
  if (ctx->capture == lc_capture::recording) return lc::refuse_while_recording(ctx, "lc_graph_launch");
  LC_REQUIRE(ctx, graph && graph->exec, "lc_graph_launch: graph is NULL");
  LC_CUDA(ctx, cudaGraphLaunch(graph->exec, ctx->stream));
  return LC_OK;
}

// An executable graph still running is freed when it completes (cudaGraphExecDestroy's contract).
void lc_graph_destroy(lc_graph *graph) {
  if (!graph) return;
  cudaGraphExecDestroy(graph->exec);
  delete graph;
}

}  // extern "C"
