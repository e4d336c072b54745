// Owns everything on the device for one model (weights, workspace, KV cache, LoRA slots) and runs
// one step: upload the batch metadata, run the forward pass, sample.
import { NUMERIC_DTYPE_BYTES, type Device, type NumericDType } from "../native/device.ts";
import { LoraSlots } from "../adapters/lora-slots.ts";
import type { ModelConfig } from "../model/config.ts";
import { LlamaForward, type BatchShape } from "../model/llama.ts";
import { decodeHalfFloats } from "../model/convert.ts";
import { ropeInverseFrequencies } from "../model/rope.ts";
import type { Checkpoint } from "../model/safetensors.ts";
import { uploadModelWeights, type ModelWeights } from "../model/weights.ts";
import { Workspace, type Capacities } from "../model/workspace.ts";
import type { HostBatch } from "./batch-builder.ts";
import { DecodeGraphs, bucketFor, isDecodeBatch, padDecodeBatch } from "./decode-graphs.ts";
import { KvCache } from "./kv-cache.ts";
import { LogitRules, type RowRules } from "./logit-rules.ts";
import { MetadataStager } from "./metadata-stager.ts";

export interface RunnerOptions {
  /** Activation, KV-cache and LoRA dtype: F32 on the CPU twin, F16/BF16 on a GPU. */
  act: NumericDType;
  /** Replay decode steps from recorded graphs (CUDA; default on there). */
  graphs?: boolean;
  caps: Capacities;
  numBlocks: number;
  blockSize: number;
  maxLoras: number;
}

export interface SampleRow extends RowRules {
  temperature: number;
  topK: number;
  topP: number;
  /** 0 = off */
  minP: number;
  uniform: number;
  /** Token ids this row may not produce (EOS before min_tokens): their logits become -inf. */
  banned?: readonly number[];
}

// -inf in each activation dtype, as the bytes lc_sample reads
const MINUS_INFINITY: Record<NumericDType, Uint8Array> = {
  F32: new Uint8Array(new Float32Array([-Infinity]).buffer),
  F16: new Uint8Array(new Uint16Array([0xfc00]).buffer),
  BF16: new Uint8Array(new Uint16Array([0xff80]).buffer),
};

export interface StepSamples {
  ids: Int32Array;
  logprobs: Float32Array;
  /** [rows, nTop] */
  topIds: Int32Array;
  topLogprobs: Float32Array;
  nTop: number;
}

export class ModelRunner {
  readonly act: NumericDType;
  readonly weights: ModelWeights;
  readonly workspace: Workspace;
  readonly kv: KvCache;
  readonly lora: LoraSlots;
  /** Grammar masks, logit_bias, penalties and their token counts. */
  readonly rules: LogitRules;
  private readonly forward: LlamaForward;
  private readonly invFreq: number;

  private readonly graphs: DecodeGraphs | null;
  private readonly stager: MetadataStager;
  /** Replay pure decode steps from recorded graphs (where the backend has them). */
  useGraphs: boolean;

  static fromCheckpoint(device: Device, config: ModelConfig, checkpoint: Checkpoint, opts: RunnerOptions): ModelRunner {
    return new ModelRunner(device, config, uploadModelWeights(checkpoint, config, device, opts.act === "F32" ? undefined : opts.act), opts);
  }

  constructor(readonly device: Device, readonly config: ModelConfig, weights: ModelWeights, readonly opts: RunnerOptions) {
    this.act = opts.act;
    this.weights = weights;
    this.workspace = new Workspace(device, config, opts.caps, this.act);
    // one block more than the block manager hands out: the padding rows of recorded decode graphs read it
    this.kv = new KvCache(device, config, opts.numBlocks + 1, opts.blockSize, this.act);
    this.graphs = device.kind === "cuda" ? new DecodeGraphs(device) : null;
    this.useGraphs = this.graphs !== null && opts.graphs !== false;
    this.lora = new LoraSlots(device, config, opts.maxLoras, this.act, opts.caps.maxLoraRank);
    const inv = ropeInverseFrequencies(config);
    this.invFreq = device.alloc(inv.byteLength);
    device.upload(this.invFreq, inv);
    this.rules = new LogitRules(device, config.vocabSize, opts.caps.maxSeqs, opts.caps.maxContextLen);
    this.stager = new MetadataStager(device, stagingBytes(opts.caps) + LogitRules.stagingBytes(config.vocabSize, opts.caps.maxSeqs));
    this.forward = new LlamaForward(device, config, this.weights, this.workspace, this.kv, this.lora, this.invFreq);
  }

  /** Runs the forward pass; logits of batch.logitRows are left on the device. */
  run(batch: HostBatch): void {
    if (this.graphs && this.useGraphs && isDecodeBatch(batch) && batch.contextLens.length <= this.opts.caps.maxSeqs) {
      const size = bucketFor(batch.contextLens.length, this.opts.caps.maxSeqs);
      const padded = padDecodeBatch(batch, size, { block: this.opts.numBlocks, maxBlocksPerSeq: this.opts.caps.maxBlocksPerSeq });
      this.upload(padded);
      const shape: BatchShape = {
        nTokens: size, nSeqs: size, maxQLen: 1, maxContextLen: this.opts.caps.maxContextLen, nSegs: size,
        hasLora: batch.hasLora, loraEverywhere: true, nLogitRows: size,
      };
      this.graphs.launch(size, batch.hasLora, () => this.forward.run(shape));
      return;
    }
    this.upload(batch);
    this.forward.run({
      nTokens: batch.tokenIds.length, nSeqs: batch.contextLens.length, maxQLen: batch.maxQLen, maxContextLen: batch.maxContextLen,
      nSegs: batch.segSlot.length, hasLora: batch.hasLora, nLogitRows: batch.logitRows.length,
    });
  }

  private upload(batch: HostBatch): void {
    const ws = this.workspace, caps = ws.caps;
    const nTokens = batch.tokenIds.length, nSeqs = batch.contextLens.length, nRows = batch.logitRows.length;
    if (nTokens > caps.maxTokens || nSeqs > caps.maxSeqs || nRows > caps.maxLogitRows) {
      throw new Error(`batch of ${nTokens} tokens / ${nSeqs} sequences / ${nRows} logit rows exceeds the capacities ${JSON.stringify(caps)}`);
    }
    const st = this.stager;
    st.reset();
    st.put(ws.tokenIds, batch.tokenIds);
    st.put(ws.positions, batch.positions);
    st.put(ws.slotMapping, batch.slotMapping);
    st.put(ws.qIndptr, batch.qIndptr);
    st.put(ws.contextLens, batch.contextLens);
    st.put(ws.blockTables, batch.blockTables);
    st.put(ws.segIndptr, batch.segIndptr);
    st.put(ws.segSlot, batch.segSlot);
    st.put(ws.logitRows, batch.logitRows);
  }

  /** Recorded decode graphs, and why recording failed (null if it did not). */
  graphStats(): { recorded: number; failure: string | null } {
    return { recorded: this.graphs?.count ?? 0, failure: this.graphs?.failure ?? null };
  }

  /** Copies the logits of the last run to the host: [rows, vocab] fp32. */
  readLogits(rows: number): Float32Array {
    const n = rows * this.config.vocabSize;
    if (this.act === "F32") {
      const out = new Float32Array(n);
      this.device.download(this.workspace.logits, out);
      return out;
    }
    const raw = new Uint16Array(n);
    this.device.download(this.workspace.logits, raw);
    return decodeHalfFloats(raw, this.act);
  }

  /** Samples one token per logit row of the last run. */
  sample(rows: SampleRow[], nTop: number): StepSamples {
    const ws = this.workspace, d = this.device, n = rows.length;
    const st = this.stager;
    st.put(ws.temperature, Float32Array.from(rows, (r) => r.temperature));
    st.put(ws.topK, Int32Array.from(rows, (r) => r.topK));
    st.put(ws.topP, Float32Array.from(rows, (r) => r.topP));
    st.put(ws.minP, Float32Array.from(rows, (r) => r.minP));
    st.put(ws.uniforms, Float32Array.from(rows, (r) => r.uniform));
    const e = NUMERIC_DTYPE_BYTES[this.act], vocab = this.config.vocabSize;
    rows.forEach((r, i) => {
      for (const id of r.banned ?? []) st.put(ws.logits + (i * vocab + id) * e, MINUS_INFINITY[this.act]);
    });
    const rules = this.rules.stage(rows, st);
    if (rules) d.logitRulesApply({ act: this.act, logits: ws.logits, nRows: n, vocab, rules });
    d.sample({
      act: this.act, logits: ws.logits, nRows: n, vocab, temperature: ws.temperature, topK: ws.topK,
      topP: ws.topP, minP: ws.minP, uniforms: ws.uniforms, nTop, outIds: ws.sampledIds, outLogprob: ws.sampledLogprobs,
      outTopIds: nTop ? ws.topIds : null, outTopLogprobs: nTop ? ws.topLogprobs : null,
    });
    if (rules) this.rules.countSampled(rules, n, ws.sampledIds);
    const out: StepSamples = {
      ids: new Int32Array(n), logprobs: new Float32Array(n), topIds: new Int32Array(n * nTop), topLogprobs: new Float32Array(n * nTop), nTop,
    };
    d.download(ws.sampledIds, out.ids);
    d.download(ws.sampledLogprobs, out.logprobs);
    if (nTop) {
      d.download(ws.topIds, out.topIds);
      d.download(ws.topLogprobs, out.topLogprobs);
    }
    return out;
  }

  free(): void {
    this.stager.free();
    this.rules.free();
    this.graphs?.free();
    this.lora.free();
    this.kv.free();
    this.workspace.free();
    this.device.free(this.invFreq);
  }
}

/** Bytes of one step's metadata at these capacities (each array 16-byte aligned), plus the sampler's. */
function stagingBytes(caps: Capacities): number {
  const a = (n: number) => Math.ceil(n / 16) * 16;
  const T = caps.maxTokens, S = caps.maxSeqs, R = caps.maxLogitRows;
  const step = 3 * a(T * 4) + 2 * a((S + 1) * 4) + 2 * a(S * 4) + a(S * caps.maxBlocksPerSeq * 4) + a(R * 4);
  return step + 5 * a(R * 4) + 4096; // the sampler's five arrays; slack for banned-token writes (restaged when full)
}
