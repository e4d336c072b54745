// Fixed device buffers for one forward pass, sized once by capacities (no allocation per step).
import type { Device, DevPtr, NumericDType } from "../native/device.ts";
import { LORA_MAX_MODULES, NUMERIC_DTYPE_BYTES } from "../native/device.ts";
import type { ModelConfig } from "./config.ts";

export interface Capacities {
  /** Tokens in one step (prefill and decode together). */
  maxTokens: number;
  /** Sequences in one step. */
  maxSeqs: number;
  /** Rows of logits one step may compute. */
  maxLogitRows: number;
  /** Blocks in one sequence's block table. */
  maxBlocksPerSeq: number;
  /** Largest LoRA rank a slot can hold. */
  maxLoraRank: number;
  /** Top log-probabilities per sampled token. */
  maxTopLogprobs: number;
  /** Longest sequence (prompt + output). */
  maxContextLen: number;
}

/** Activations (act dtype) and batch metadata (int32) on the device. */
export class Workspace {
  readonly hidden: DevPtr;
  readonly normed: DevPtr;
  /** the fused q|k|v projection [T, qw + 2 kvw] */
  readonly qkv: DevPtr;
  /** q after RoPE [T, qw] */
  readonly q: DevPtr;
  readonly attn: DevPtr;
  readonly proj: DevPtr;
  /** the fused gate|up projection [T, 2 inter] */
  readonly gateUp: DevPtr;
  /** silu(gate) * up [T, inter] */
  readonly mlp: DevPtr;
  readonly loraTmp: DevPtr;
  readonly lastHidden: DevPtr;
  readonly logits: DevPtr;
  // metadata
  readonly tokenIds: DevPtr;
  readonly positions: DevPtr;
  readonly slotMapping: DevPtr;
  readonly qIndptr: DevPtr;
  readonly contextLens: DevPtr;
  readonly blockTables: DevPtr;
  readonly segIndptr: DevPtr;
  readonly segSlot: DevPtr;
  readonly logitRows: DevPtr;
  // sampling in / out
  readonly temperature: DevPtr;
  readonly topK: DevPtr;
  readonly topP: DevPtr;
  readonly minP: DevPtr;
  readonly uniforms: DevPtr;
  readonly sampledIds: DevPtr;
  readonly sampledLogprobs: DevPtr;
  readonly topIds: DevPtr;
  readonly topLogprobs: DevPtr;
  /** Split-KV attention scratch, sized for decode batches (0 bytes where the backend does not split). */
  readonly attentionWorkspace: DevPtr;
  readonly attentionWorkspaceBytes: number;
  private readonly owned: DevPtr[] = [];

  constructor(private readonly device: Device, config: ModelConfig, readonly caps: Capacities, readonly act: NumericDType) {
    const e = NUMERIC_DTYPE_BYTES[act];
    const T = caps.maxTokens, h = config.hiddenSize, qw = config.numHeads * config.headDim;
    const kvw = config.numKvHeads * config.headDim, inter = config.intermediateSize;
    const widest = Math.max(h, qw);
    this.hidden = this.alloc(T * h * e);
    this.normed = this.alloc(T * widest * e);
    this.qkv = this.alloc(T * (qw + 2 * kvw) * e);
    this.q = this.alloc(T * qw * e);
    this.attn = this.alloc(T * qw * e);
    this.proj = this.alloc(T * h * e);
    this.gateUp = this.alloc(T * 2 * inter * e);
    this.mlp = this.alloc(T * inter * e);
    // a LoRA launch covers up to LORA_MAX_MODULES projections, each max_rank columns wide
    this.loraTmp = this.alloc(T * LORA_MAX_MODULES * Math.max(1, caps.maxLoraRank) * 4);
    this.lastHidden = this.alloc(caps.maxLogitRows * h * e);
    this.logits = this.alloc(caps.maxLogitRows * config.vocabSize * e);
    this.tokenIds = this.alloc(T * 4);
    this.positions = this.alloc(T * 4);
    this.slotMapping = this.alloc(T * 4);
    this.qIndptr = this.alloc((caps.maxSeqs + 1) * 4);
    this.contextLens = this.alloc(caps.maxSeqs * 4);
    this.blockTables = this.alloc(caps.maxSeqs * caps.maxBlocksPerSeq * 4);
    this.segIndptr = this.alloc((caps.maxSeqs + 1) * 4);
    this.segSlot = this.alloc(caps.maxSeqs * 4);
    this.logitRows = this.alloc(caps.maxLogitRows * 4);
    const R = caps.maxLogitRows, K = Math.max(1, caps.maxTopLogprobs);
    this.temperature = this.alloc(R * 4);
    this.topK = this.alloc(R * 4);
    this.topP = this.alloc(R * 4);
    this.minP = this.alloc(R * 4);
    this.uniforms = this.alloc(R * 4);
    this.sampledIds = this.alloc(R * 4);
    this.sampledLogprobs = this.alloc(R * 4);
    this.topIds = this.alloc(R * K * 4);
    this.topLogprobs = this.alloc(R * K * 4);
    // decode steps run in power-of-two buckets; the split needs most scratch at some bucket size
    let splitBytes = 0;
    for (let n = 1; ; n = Math.min(n * 2, caps.maxSeqs)) {
      splitBytes = Math.max(splitBytes, device.attentionWorkspaceBytes({
        nTokens: n, nSeqs: n, maxQLen: 1, maxContextLen: caps.maxContextLen, nHeads: config.numHeads, headDim: config.headDim,
      }));
      if (n === caps.maxSeqs) break;
    }
    this.attentionWorkspaceBytes = splitBytes;
    this.attentionWorkspace = this.attentionWorkspaceBytes > 0 ? this.alloc(this.attentionWorkspaceBytes) : 0;
  }

  private alloc(bytes: number): DevPtr {
    const p = this.device.alloc(bytes);
    this.owned.push(p);
    return p;
  }

  free(): void {
    for (const p of this.owned.splice(0)) this.device.free(p);
  }
}
