// The bun:ffi symbol table of cuda/loracuda.h, one entry per C function, in the header's order.
import { FFIType as T, dlopen } from "bun:ffi";

// Device pointers (and the context) travel as u64 numbers; host buffers as typed arrays (ptr).
const ctx = T.u64;
const ptr = T.u64;
const host = T.ptr;
const dtype = T.i32;

export const LORACUDA_SYMBOLS = {
  lc_abi_version: { args: [], returns: T.i32 },
  lc_backend_name: { args: [], returns: T.cstring },
  lc_ctx_create: { args: [T.i32, host], returns: T.i32 },
  lc_ctx_destroy: { args: [ctx], returns: T.void },
  lc_last_error: { args: [ctx], returns: T.cstring },
  lc_mem_info: { args: [ctx, host, host], returns: T.i32 },
  lc_alloc: { args: [ctx, T.u64, host], returns: T.i32 },
  lc_free: { args: [ctx, ptr], returns: T.i32 },
  lc_host_alloc: { args: [ctx, T.u64, host], returns: T.i32 },
  lc_host_free: { args: [ctx, ptr], returns: T.i32 },
  lc_upload: { args: [ctx, ptr, host, T.u64], returns: T.i32 },
  lc_upload_async: { args: [ctx, ptr, host, T.u64], returns: T.i32 },
  lc_download: { args: [ctx, host, ptr, T.u64], returns: T.i32 },
  lc_memset: { args: [ctx, ptr, T.i32, T.u64], returns: T.i32 },
  lc_copy: { args: [ctx, ptr, ptr, T.u64], returns: T.i32 },
  lc_sync: { args: [ctx], returns: T.i32 },
  lc_fill_random: { args: [ctx, dtype, ptr, T.u64, T.u64, T.f32], returns: T.i32 },
  lc_graph_begin: { args: [ctx], returns: T.i32 },
  lc_graph_end: { args: [ctx, host], returns: T.i32 },
  lc_graph_launch: { args: [ctx, T.u64], returns: T.i32 },
  lc_graph_destroy: { args: [T.u64], returns: T.void },
  lc_embed: { args: [ctx, dtype, ptr, T.i64, T.i64, ptr, T.i64, dtype, ptr], returns: T.i32 },
  lc_rmsnorm: { args: [ctx, dtype, ptr, dtype, ptr, T.i64, T.i64, T.f32, ptr], returns: T.i32 },
  lc_add_rmsnorm: { args: [ctx, dtype, ptr, ptr, dtype, ptr, T.i64, T.i64, T.f32, ptr], returns: T.i32 },
  lc_linear: { args: [ctx, dtype, ptr, dtype, ptr, T.i64, T.i64, T.i64, T.i32, ptr], returns: T.i32 },
  lc_rope_store: {
    args: [ctx, dtype, ptr, ptr, ptr, T.i64, T.i32, T.i32, T.i32, ptr, T.f32, ptr, dtype, ptr, ptr, T.i64],
    returns: T.i32,
  },
  lc_attention: {
    args: [ctx, dtype, ptr, dtype, ptr, ptr, T.i64, ptr, ptr, ptr, T.i32, T.i32, T.i64, T.i32, T.i32,
      T.i32, T.i32, T.i32, T.i32, T.i32, T.f32, ptr, T.u64, ptr],
    returns: T.i32,
  },
  lc_attention_workspace_bytes: { args: [T.i64, T.i32, T.i32, T.i32, T.i32, T.i32], returns: T.u64 },
  lc_silu_mul: { args: [ctx, dtype, ptr, T.i64, T.i64, ptr], returns: T.i32 },
  lc_linear_silu_mul: { args: [ctx, dtype, ptr, dtype, ptr, T.i64, T.i64, T.i64, ptr, ptr], returns: T.i32 },
  lc_linear_rope_store: {
    args: [ctx, dtype, ptr, dtype, ptr, T.i64, T.i64, ptr, ptr, ptr, T.i32, T.i32, T.i32, ptr, T.f32, ptr, dtype, ptr, ptr, T.i64],
    returns: T.i32,
  },
  lc_add: { args: [ctx, dtype, ptr, T.i64, ptr], returns: T.i32 },
  lc_gather_rows: { args: [ctx, dtype, ptr, T.i64, ptr, T.i64, T.i64, ptr], returns: T.i32 },
  // mods: host array of lc_lora_module (7 x 8 bytes each)
  lc_lora_shrink: {
    args: [ctx, dtype, ptr, T.i64, dtype, host, T.i32, T.i32, ptr, ptr, T.i32, T.i64, T.i32, ptr],
    returns: T.i32,
  },
  lc_lora_expand: {
    args: [ctx, dtype, ptr, T.i32, dtype, host, T.i32, T.i32, ptr, ptr, T.i32, T.i64, T.i64, ptr],
    returns: T.i32,
  },
  // rules: a host lc_logit_rules (11 pointers, then two int64)
  lc_logit_rules_apply: { args: [ctx, dtype, ptr, T.i32, T.i32, host], returns: T.i32 },
  lc_count_tokens: { args: [ctx, ptr, T.i32, T.i32, ptr, ptr, T.i32], returns: T.i32 },
  lc_sample: {
    args: [ctx, dtype, ptr, T.i32, T.i32, ptr, ptr, ptr, ptr, ptr, T.i32, ptr, ptr, ptr, ptr],
    returns: T.i32,
  },
} as const;

export type LoracudaLibrary = ReturnType<typeof openLoracuda>;

export function openLoracuda(path: string) {
  return dlopen(path, LORACUDA_SYMBOLS).symbols;
}

export const LC_ABI_VERSION = 6;

export enum Status {
  Ok = 0,
  InvalidArgument = 1,
  NoDevice = 2,
  OutOfMemory = 3,
  Unsupported = 4,
  Backend = 5,
}

export enum DTypeCode {
  F32 = 0,
  F16 = 1,
  BF16 = 2,
}
