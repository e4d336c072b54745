// Graphs are a CUDA feature: the twin runs every op at once, so there is nothing to record.
#include "common.h"

extern "C" {

lc_status lc_graph_begin(lc_ctx *ctx) {
  LC_REQUIRE_CTX(ctx);
  return lc::fail(ctx, LC_ERR_UNSUPPORTED, "lc_graph_begin: graphs need the CUDA backend");
}

lc_status lc_graph_end(lc_ctx *ctx, lc_graph **out) {
  LC_REQUIRE_CTX(ctx);
  if (out) *out = nullptr;
  return lc::fail(ctx, LC_ERR_UNSUPPORTED, "lc_graph_end: graphs need the CUDA backend");
}

lc_status lc_graph_launch(lc_ctx *ctx, lc_graph *graph) {
  LC_REQUIRE_CTX(ctx);
  (void)graph;
  return lc::fail(ctx, LC_ERR_UNSUPPORTED, "lc_graph_launch: graphs need the CUDA backend");
}

void lc_graph_destroy(lc_graph *graph) { (void)graph; }

}  // extern "C"
