// cuBLAS, loaded with dlopen once per process and never unloaded, so the library loads (and the
// CPU-side checks work) on hosts with only the driver; GEMMs fail with a clear message there.
#include <dlfcn.h>

#include <mutex>
#include <string>

#include "common.cuh"

static lc_cublas g_cublas;
static std::string g_cublas_error;

static void load_cublas() {
  // The sonames of cuBLAS 13 and 12, then the toolkit's default folder for hosts whose loader
  // path lacks it.
  const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so",
                         "/usr/local/cuda/lib64/libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.12"};
  void *lib = nullptr;
  std::string tried;
  for (const char *name : names) {
    lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib) break;
    const char *why = dlerror();
    tried += std::string(tried.empty() ? "" : "; ") + (why ? why : name);
  }
  if (!lib) {
    g_cublas_error = "cuBLAS not found (install the CUDA toolkit's libcublas or add its folder to LD_LIBRARY_PATH): " + tried;
    return;
  }
  lc_cublas c;
  c.create = (lc_cublas::create_fn)dlsym(lib, "cublasCreate_v2");
  c.destroy = (lc_cublas::destroy_fn)dlsym(lib, "cublasDestroy_v2");
  c.set_stream = (lc_cublas::set_stream_fn)dlsym(lib, "cublasSetStream_v2");
  c.set_workspace = (lc_cublas::set_workspace_fn)dlsym(lib, "cublasSetWorkspace_v2");
  c.gemm_ex = (lc_cublas::gemm_ex_fn)dlsym(lib, "cublasGemmEx");
  c.status_string = (lc_cublas::status_string_fn)dlsym(lib, "cublasGetStatusString");
  if (!c.create || !c.destroy || !c.set_stream || !c.gemm_ex) {
    g_cublas_error = "cuBLAS was found but lacks cublasCreate_v2 / cublasDestroy_v2 / cublasSetStream_v2 / cublasGemmEx";
    return;
  }
  g_cublas = c;
}

const lc_cublas &lc::cublas() {
  static std::once_flag once;
  std::call_once(once, load_cublas);
  return g_cublas;
}

const char *lc::cublas_status_text(int st) {
  const lc_cublas &c = lc::cublas();
  return c.status_string ? c.status_string(st) : "cuBLAS error";
}

const std::string &lc::cublas_error() {
  lc::cublas();
  return g_cublas_error;
}
