// The typed face of loracuda.h: the only TypeScript that sees raw pointers and status codes.
import { toArrayBuffer } from "bun:ffi";
import { LC_ABI_VERSION, Status, openLoracuda, type LoracudaLibrary } from "./ffi.ts";
import { DTYPE_CODE, NativeError, type DevPtr, type NumericDType } from "./native-types.ts";
import { findLibrary, LIBRARY_FILE, type BackendKind } from "./library-path.ts";
import { packModules, type LoraModuleTables } from "./lora-module-abi.ts";
import { packLogitRules, type LogitRulesTables } from "./logit-rules-abi.ts";

export { LORA_MAX_MODULES, type LoraModuleTables } from "./lora-module-abi.ts";
export type { LogitRulesTables } from "./logit-rules-abi.ts";

export { DTYPE_CODE, NUMERIC_DTYPE_BYTES, NativeError, type DevPtr, type NumericDType } from "./native-types.ts";
export type { BackendKind };

// Detaches a view's ArrayBuffer so that it (and every subarray of it) reads as empty instead of
// touching freed native memory.
function detach(view: Uint8Array): void {
  (view.buffer as ArrayBuffer).transfer(0);
}

/** A context of one native backend: its memory and its ops. */
export class Device {
  private closed = false;
  private epoch = 0;
  /** Views handed out by hostAlloc, to their native address (what lc_host_free takes). */
  private readonly hostViews = new Map<Uint8Array, number>();

  private constructor(
    private readonly lib: LoracudaLibrary,
    private readonly ctx: number,
    readonly kind: BackendKind,
    readonly libraryPath: string,
  ) {}

  static async open(kind: BackendKind, deviceIndex = 0): Promise<Device> {
    const path = await findLibrary(kind);
    if (!path) {
      throw new NativeError("open", Status.Unsupported,
        `${LIBRARY_FILE[kind]} not found (run \`make\`, or set LORA_SERVE_LIB_DIR)`);
    }
    const lib = openLoracuda(path);
    const abi = lib.lc_abi_version();
    if (abi !== LC_ABI_VERSION) {
      throw new NativeError("open", Status.Unsupported, `${path} has ABI ${abi}, this build expects ${LC_ABI_VERSION}`);
    }
    const out = new BigUint64Array(1);
    const status = lib.lc_ctx_create(deviceIndex, out) as Status;
    if (status !== Status.Ok) throw new NativeError("lc_ctx_create", status, String(lib.lc_last_error(0)));
    return new Device(lib, Number(out[0]), kind, path);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const view of this.hostViews.keys()) detach(view); // their memory goes with the context
    this.hostViews.clear();
    this.lib.lc_ctx_destroy(this.ctx);
  }

  private check(op: string, status: number): void {
    if (status !== Status.Ok) throw new NativeError(op, status, String(this.lib.lc_last_error(this.ctx)));
  }

  memInfo(): { free: number; total: number } {
    const free = new BigUint64Array(1), total = new BigUint64Array(1);
    this.check("lc_mem_info", this.lib.lc_mem_info(this.ctx, free, total));
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  alloc(bytes: number): DevPtr {
    const out = new BigUint64Array(1);
    this.check("lc_alloc", this.lib.lc_alloc(this.ctx, bytes, out));
    return Number(out[0]);
  }

  free(p: DevPtr): void {
    this.check("lc_free", this.lib.lc_free(this.ctx, p));
  }

  /**
   * Zero-filled host memory the device copies from at full speed (CUDA: page-locked; CPU: malloc),
   * as a view over the native memory: upload / download from it (or a subarray) pass its address
   * directly. Freed with hostFree or with the device; the view is then detached (byteLength 0).
   */
  hostAlloc(bytes: number): Uint8Array<ArrayBuffer> {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`hostAlloc: bad size ${bytes}`);
    if (this.closed) throw new NativeError("lc_host_alloc", Status.InvalidArgument, "the device is closed");
    const out = new BigUint64Array(1);
    this.check("lc_host_alloc", this.lib.lc_host_alloc(this.ctx, bytes, out));
    const address = Number(out[0]);
    // toArrayBuffer refuses length 0; the native side allocates at least 1 byte anyway
    const view = new Uint8Array(toArrayBuffer(address, 0, Math.max(1, bytes)), 0, bytes);
    this.hostViews.set(view, address);
    return view;
  }

  /** Frees hostAlloc'd memory; throws for a view it did not hand out or already freed. */
  hostFree(view: Uint8Array): void {
    const address = this.hostViews.get(view);
    if (address === undefined) {
      throw new NativeError("lc_host_free", Status.InvalidArgument, "not a live view from hostAlloc on this device (freed twice, or foreign)");
    }
    this.check("lc_host_free", this.lib.lc_host_free(this.ctx, address));
    this.hostViews.delete(view);
    detach(view);
  }

  /** Live hostAlloc'd buffers (a debug figure for tests and leak checks). */
  get hostAllocations(): number {
    return this.hostViews.size;
  }

  /** Copies a host array (or the first `bytes` of it) to device memory at dst. */
  upload(dst: DevPtr, src: ArrayBufferView, bytes = src.byteLength): void {
    if (bytes === 0) return;
    this.check("lc_upload", this.lib.lc_upload(this.ctx, dst, src as Uint8Array, bytes));
  }

  /**
   * Enqueues a copy from hostAlloc'd memory (a view or a subarray of one) and returns at once. The
   * bytes must stay unchanged until the next sync or download returns (syncEpoch then moves on).
   */
  uploadAsync(dst: DevPtr, src: Uint8Array, bytes = src.byteLength): void {
    if (bytes === 0) return;
    this.check("lc_upload_async", this.lib.lc_upload_async(this.ctx, dst, src, bytes));
  }

  download(src: DevPtr, dst: ArrayBufferView, bytes = dst.byteLength): void {
    if (bytes === 0) return;
    this.check("lc_download", this.lib.lc_download(this.ctx, dst as Uint8Array, src, bytes));
    this.epoch++;
  }

  /** Counts the waits for enqueued work (sync, download): an async upload made before the count moved has run. */
  get syncEpoch(): number {
    return this.epoch;
  }

  memset(dst: DevPtr, byteValue: number, bytes: number): void {
    this.check("lc_memset", this.lib.lc_memset(this.ctx, dst, byteValue, bytes));
  }

  /** Device-to-device copy, enqueued like an op (recordable in a graph). */
  copy(dst: DevPtr, src: DevPtr, bytes: number): void {
    this.check("lc_copy", this.lib.lc_copy(this.ctx, dst, src, bytes));
  }

  sync(): void {
    this.check("lc_sync", this.lib.lc_sync(this.ctx));
    this.epoch++;
  }

  /** p[i] = scale * (2u - 1), u from the header's counter-based hash of (seed, i): the same on every backend. */
  fillRandom(a: { dtype: NumericDType; ptr: DevPtr; n: number; seed: number | bigint; scale: number }): void {
    this.check("lc_fill_random", this.lib.lc_fill_random(this.ctx, DTYPE_CODE[a.dtype], a.ptr, a.n, BigInt.asUintN(64, BigInt(a.seed)), a.scale));
  }

  /** Starts recording ops (CUDA only; the CPU twin throws Unsupported). No upload, download, sync,
   *  alloc or free until graphEnd. */
  graphBegin(): void {
    this.check("lc_graph_begin", this.lib.lc_graph_begin(this.ctx));
  }

  /** Ends recording; returns an opaque handle for graphLaunch / graphDestroy. */
  graphEnd(): number {
    const out = new BigUint64Array(1);
    this.check("lc_graph_end", this.lib.lc_graph_end(this.ctx, out));
    return Number(out[0]);
  }

  /** Replays a recorded graph on the device's stream, reading buffers' contents at launch time. */
  graphLaunch(graph: number): void {
    this.check("lc_graph_launch", this.lib.lc_graph_launch(this.ctx, graph));
  }

  graphDestroy(graph: number): void {
    this.lib.lc_graph_destroy(graph);
  }

  embed(a: { wt: NumericDType; table: DevPtr; vocab: number; hidden: number; ids: DevPtr; nTokens: number; act: NumericDType; out: DevPtr }): void {
    this.check("lc_embed", this.lib.lc_embed(this.ctx, DTYPE_CODE[a.wt], a.table, a.vocab, a.hidden, a.ids, a.nTokens, DTYPE_CODE[a.act], a.out));
  }

  rmsnorm(a: { act: NumericDType; x: DevPtr; wt: NumericDType; w: DevPtr; nTokens: number; hidden: number; eps: number; out: DevPtr }): void {
    this.check("lc_rmsnorm", this.lib.lc_rmsnorm(this.ctx, DTYPE_CODE[a.act], a.x, DTYPE_CODE[a.wt], a.w, a.nTokens, a.hidden, a.eps, a.out));
  }

  /** residual += x; out = rmsnorm(residual) * w */
  addRmsnorm(a: { act: NumericDType; x: DevPtr; residual: DevPtr; wt: NumericDType; w: DevPtr; nTokens: number; hidden: number; eps: number; out: DevPtr }): void {
    this.check("lc_add_rmsnorm", this.lib.lc_add_rmsnorm(this.ctx, DTYPE_CODE[a.act], a.x, a.residual, DTYPE_CODE[a.wt], a.w, a.nTokens, a.hidden, a.eps, a.out));
  }

  /** y[m, n] = (accumulate ? y : 0) + x[m, k] @ w[n, k]^T */
  linear(a: { act: NumericDType; x: DevPtr; wt: NumericDType; w: DevPtr; m: number; n: number; k: number; accumulate?: boolean; y: DevPtr }): void {
    this.check("lc_linear", this.lib.lc_linear(this.ctx, DTYPE_CODE[a.act], a.x, DTYPE_CODE[a.wt], a.w, a.m, a.n, a.k, a.accumulate ? 1 : 0, a.y));
  }

  /** RoPE on a fused q|k|v projection: rotated q into qOut, rotated k and v into their cache slots. */
  ropeStore(a: {
    act: NumericDType; qkv: DevPtr; positions: DevPtr; slotMapping: DevPtr; nTokens: number; nHeads: number; nKvHeads: number;
    headDim: number; invFreq: DevPtr; attentionScaling: number; qOut: DevPtr; cacheDtype: NumericDType; kCache: DevPtr; vCache: DevPtr;
    cacheSlots: number;
  }): void {
    this.check("lc_rope_store", this.lib.lc_rope_store(this.ctx, DTYPE_CODE[a.act], a.qkv, a.positions, a.slotMapping, a.nTokens, a.nHeads,
      a.nKvHeads, a.headDim, a.invFreq, a.attentionScaling, a.qOut, DTYPE_CODE[a.cacheDtype], a.kCache, a.vCache, a.cacheSlots));
  }

  attention(a: {
    act: NumericDType; q: DevPtr; cacheDtype: NumericDType; kCache: DevPtr; vCache: DevPtr; cacheSlots: number;
    qIndptr: DevPtr; contextLens: DevPtr; blockTables: DevPtr; maxBlocksPerSeq: number; nSeqs: number; nTokens: number;
    maxQLen: number; maxContextLen: number; blockSize: number; nHeads: number; nKvHeads: number; headDim: number;
    slidingWindow: number; scale: number; out: DevPtr;
    /** Lets the backend split long contexts (see attentionWorkspaceBytes); absent or too small: unsplit. */
    workspace?: DevPtr; workspaceBytes?: number;
  }): void {
    this.check("lc_attention", this.lib.lc_attention(this.ctx, DTYPE_CODE[a.act], a.q, DTYPE_CODE[a.cacheDtype], a.kCache, a.vCache,
      a.cacheSlots, a.qIndptr, a.contextLens, a.blockTables, a.maxBlocksPerSeq, a.nSeqs, a.nTokens, a.maxQLen, a.maxContextLen,
      a.blockSize, a.nHeads, a.nKvHeads, a.headDim, a.slidingWindow, a.scale, a.workspace ?? 0, a.workspaceBytes ?? 0, a.out));
  }

  /** Workspace bytes that let attention split long contexts for these bounds (0: it would not split). */
  attentionWorkspaceBytes(a: { nTokens: number; nSeqs: number; maxQLen: number; maxContextLen: number; nHeads: number; headDim: number }): number {
    return Number(this.lib.lc_attention_workspace_bytes(a.nTokens, a.nSeqs, a.maxQLen, a.maxContextLen, a.nHeads, a.headDim));
  }

  /** out[t, i] = silu(gateUp[t, i]) * gateUp[t, inter + i] */
  siluMul(a: { act: NumericDType; gateUp: DevPtr; nTokens: number; inter: number; out: DevPtr }): void {
    this.check("lc_silu_mul", this.lib.lc_silu_mul(this.ctx, DTYPE_CODE[a.act], a.gateUp, a.nTokens, a.inter, a.out));
  }

  /** siluMul of linear's output (W: gate rows, then up rows) in one op; gateUp is scratch it may leave unwritten. */
  linearSiluMul(a: { act: NumericDType; x: DevPtr; wt: NumericDType; w: DevPtr; m: number; inter: number; k: number; gateUp: DevPtr; out: DevPtr }): void {
    this.check("lc_linear_silu_mul", this.lib.lc_linear_silu_mul(this.ctx, DTYPE_CODE[a.act], a.x, DTYPE_CODE[a.wt], a.w, a.m, a.inter, a.k, a.gateUp, a.out));
  }

  /** ropeStore of linear's output (the fused q|k|v weight) in one op; qkv is scratch it may leave unwritten. */
  linearRopeStore(a: {
    act: NumericDType; x: DevPtr; wt: NumericDType; w: DevPtr; m: number; k: number; qkv: DevPtr; positions: DevPtr; slotMapping: DevPtr;
    nHeads: number; nKvHeads: number; headDim: number; invFreq: DevPtr; attentionScaling: number; qOut: DevPtr; cacheDtype: NumericDType;
    kCache: DevPtr; vCache: DevPtr; cacheSlots: number;
  }): void {
    this.check("lc_linear_rope_store", this.lib.lc_linear_rope_store(this.ctx, DTYPE_CODE[a.act], a.x, DTYPE_CODE[a.wt], a.w, a.m, a.k, a.qkv,
      a.positions, a.slotMapping, a.nHeads, a.nKvHeads, a.headDim, a.invFreq, a.attentionScaling, a.qOut, DTYPE_CODE[a.cacheDtype], a.kCache,
      a.vCache, a.cacheSlots));
  }

  add(a: { act: NumericDType; x: DevPtr; n: number; y: DevPtr }): void {
    this.check("lc_add", this.lib.lc_add(this.ctx, DTYPE_CODE[a.act], a.x, a.n, a.y));
  }

  gatherRows(a: { act: NumericDType; x: DevPtr; width: number; rows: DevPtr; nRows: number; xRows: number; out: DevPtr }): void {
    this.check("lc_gather_rows", this.lib.lc_gather_rows(this.ctx, DTYPE_CODE[a.act], a.x, a.width, a.rows, a.nRows, a.xRows, a.out));
  }

  /** One shrink for up to LORA_MAX_MODULES projections of one input: tmp [nTokens, modules * maxRank] f32. */
  loraShrink(a: {
    act: NumericDType; x: DevPtr; inDim: number; wt: NumericDType; modules: LoraModuleTables[]; nSlots: number;
    segIndptr: DevPtr; segSlot: DevPtr; nSegs: number; nTokens: number; maxRank: number; tmp: DevPtr;
  }): void {
    this.check("lc_lora_shrink", this.lib.lc_lora_shrink(this.ctx, DTYPE_CODE[a.act], a.x, a.inDim, DTYPE_CODE[a.wt], packModules(a.modules),
      a.modules.length, a.nSlots, a.segIndptr, a.segSlot, a.nSegs, a.nTokens, a.maxRank, a.tmp));
  }

  /** Adds each module's delta into its columns of y [nTokens, yWidth]. */
  loraExpand(a: {
    act: NumericDType; tmp: DevPtr; maxRank: number; wt: NumericDType; modules: LoraModuleTables[]; nSlots: number;
    segIndptr: DevPtr; segSlot: DevPtr; nSegs: number; nTokens: number; yWidth: number; y: DevPtr;
  }): void {
    this.check("lc_lora_expand", this.lib.lc_lora_expand(this.ctx, DTYPE_CODE[a.act], a.tmp, a.maxRank, DTYPE_CODE[a.wt], packModules(a.modules),
      a.modules.length, a.nSlots, a.segIndptr, a.segSlot, a.nSegs, a.nTokens, a.yWidth, a.y));
  }

  /** Grammar masks, logit_bias and penalties applied in place to logits [nRows, vocab] (lc_logit_rules_apply). */
  logitRulesApply(a: { act: NumericDType; logits: DevPtr; nRows: number; vocab: number; rules: LogitRulesTables }): void {
    this.check("lc_logit_rules_apply", this.lib.lc_logit_rules_apply(this.ctx, DTYPE_CODE[a.act], a.logits, a.nRows, a.vocab, packLogitRules(a.rules)));
  }

  /** counts[rows[i], ids[i]] += 1 where rows[i] >= 0 (device arrays [n]). */
  countTokens(a: { counts: DevPtr; nCountRows: number; vocab: number; rows: DevPtr; ids: DevPtr; n: number }): void {
    this.check("lc_count_tokens", this.lib.lc_count_tokens(this.ctx, a.counts, a.nCountRows, a.vocab, a.rows, a.ids, a.n));
  }

  sample(a: {
    act: NumericDType; logits: DevPtr; nRows: number; vocab: number; temperature: DevPtr; topK: DevPtr; topP: DevPtr; minP: DevPtr;
    uniforms: DevPtr; nTop: number; outIds: DevPtr; outLogprob: DevPtr; outTopIds: DevPtr | null; outTopLogprobs: DevPtr | null;
  }): void {
    this.check("lc_sample", this.lib.lc_sample(this.ctx, DTYPE_CODE[a.act], a.logits, a.nRows, a.vocab, a.temperature, a.topK, a.topP,
      a.minP, a.uniforms, a.nTop, a.outIds, a.outLogprob, a.outTopIds ?? 0, a.outTopLogprobs ?? 0));
  }
}
