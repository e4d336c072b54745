// The Llama-family forward pass (Llama 2/3, Mistral) as a sequence of native ops over one batch.
import type { Device, LoraModuleTables, NumericDType } from "../native/device.ts";
import type { KvCacheView, LoraSlotTables } from "./forward-inputs.ts";
import type { ModelConfig } from "./config.ts";
import type { ModelWeights } from "./weights.ts";
import type { Workspace } from "./workspace.ts";
import { PROJECTIONS, projectionLayout, type Projection } from "./projections.ts";

/** The host-side shape of a batch whose metadata is already in the workspace. */
export interface BatchShape {
  nTokens: number;
  nSeqs: number;
  maxQLen: number;
  maxContextLen: number;
  nSegs: number;
  /** Whether any segment uses an adapter. */
  hasLora: boolean;
  /**
   * Run LoRA ops on every projection, targeted by a resident adapter or not (a recorded graph
   * must stay right when adapters with other targets are loaded later).
   */
  loraEverywhere?: boolean;
  nLogitRows: number;
}

export class LlamaForward {
  readonly act: NumericDType;
  private readonly layouts: Record<Projection, ReturnType<typeof projectionLayout>>;
  /** Per layer and projection, each module's slot tables and output columns (fixed device addresses). */
  private readonly loraTables: Record<Projection, LoraModuleTables[]>[];

  constructor(
    private readonly device: Device,
    readonly config: ModelConfig,
    private readonly weights: ModelWeights,
    private readonly ws: Workspace,
    private readonly kv: KvCacheView,
    private readonly lora: LoraSlotTables,
    private readonly invFreq: number,
    private readonly attentionScaling = 1,
  ) {
    this.act = ws.act;
    const projections = Object.keys(PROJECTIONS) as Projection[];
    this.layouts = Object.fromEntries(projections.map((p) => [p, projectionLayout(config, p)])) as typeof this.layouts;
    this.loraTables = Array.from({ length: config.numLayers }, (_, layer) => Object.fromEntries(projections.map((p) => [
      p, this.layouts[p].parts.map((part) => ({ ...lora.tables(layer, part.module), outOffset: part.offset, outDim: part.rows })),
    ])) as Record<Projection, LoraModuleTables[]>);
  }

  /** Runs the batch and leaves logits [nLogitRows, vocab] in ws.logits. */
  run(b: BatchShape): void {
    const { device: d, config: c, weights: w, ws, act } = this;
    const T = b.nTokens, h = c.hiddenSize;
    d.embed({ wt: w.embed.dtype, table: w.embed.ptr, vocab: c.vocabSize, hidden: h, ids: ws.tokenIds, nTokens: T, act, out: ws.hidden });
    d.rmsnorm({ act, x: ws.hidden, wt: w.layers[0].inputNorm.dtype, w: w.layers[0].inputNorm.ptr, nTokens: T, hidden: h, eps: c.rmsNormEps, out: ws.normed });
    for (let l = 0; l < c.numLayers; l++) {
      const L = w.layers[l];
      const rope = {
        positions: ws.positions, slotMapping: ws.slotMapping, nHeads: c.numHeads, nKvHeads: c.numKvHeads, headDim: c.headDim,
        invFreq: this.invFreq, attentionScaling: this.attentionScaling, qOut: ws.q, cacheDtype: this.kv.dtype, kCache: this.kv.k[l],
        vCache: this.kv.v[l], cacheSlots: this.kv.slots,
      };
      // without LoRA on q|k|v, RoPE and the KV write ride on the projection (one kernel at batch 1)
      const qkvLora = this.loraModules(b, l, "qkv");
      if (qkvLora.length === 0) {
        d.linearRopeStore({ act, x: ws.normed, wt: L.qkv.dtype, w: L.qkv.ptr, m: T, k: h, qkv: ws.qkv, ...rope });
      } else {
        this.projection(b, l, "qkv", ws.normed, ws.qkv, qkvLora);
        d.ropeStore({ act, qkv: ws.qkv, nTokens: T, ...rope });
      }
      d.attention({
        act, q: ws.q, cacheDtype: this.kv.dtype, kCache: this.kv.k[l], vCache: this.kv.v[l], cacheSlots: this.kv.slots,
        qIndptr: ws.qIndptr, contextLens: ws.contextLens, blockTables: ws.blockTables, maxBlocksPerSeq: ws.caps.maxBlocksPerSeq,
        nSeqs: b.nSeqs, nTokens: T, maxQLen: b.maxQLen, maxContextLen: b.maxContextLen, blockSize: this.kv.blockSize,
        nHeads: c.numHeads, nKvHeads: c.numKvHeads, headDim: c.headDim, slidingWindow: c.slidingWindow, scale: 1 / Math.sqrt(c.headDim),
        workspace: ws.attentionWorkspace, workspaceBytes: ws.attentionWorkspaceBytes, out: ws.attn,
      });
      this.projection(b, l, "o", ws.attn, ws.proj);
      // residual add fused into the norm that follows it
      d.addRmsnorm({ act, x: ws.proj, residual: ws.hidden, wt: L.postNorm.dtype, w: L.postNorm.ptr, nTokens: T, hidden: h, eps: c.rmsNormEps, out: ws.normed });
      const gateUpLora = this.loraModules(b, l, "gateUp");
      if (gateUpLora.length === 0) {
        d.linearSiluMul({ act, x: ws.normed, wt: L.gateUp.dtype, w: L.gateUp.ptr, m: T, inter: c.intermediateSize, k: h, gateUp: ws.gateUp, out: ws.mlp });
      } else {
        this.projection(b, l, "gateUp", ws.normed, ws.gateUp, gateUpLora);
        d.siluMul({ act, gateUp: ws.gateUp, nTokens: T, inter: c.intermediateSize, out: ws.mlp });
      }
      this.projection(b, l, "down", ws.mlp, ws.proj);
      const next = w.layers[l + 1];
      if (next) d.addRmsnorm({ act, x: ws.proj, residual: ws.hidden, wt: next.inputNorm.dtype, w: next.inputNorm.ptr, nTokens: T, hidden: h, eps: c.rmsNormEps, out: ws.normed });
      else d.add({ act, x: ws.proj, n: T * h, y: ws.hidden });
    }
    d.gatherRows({ act, x: ws.hidden, width: h, rows: ws.logitRows, nRows: b.nLogitRows, xRows: T, out: ws.lastHidden });
    d.rmsnorm({ act, x: ws.lastHidden, wt: w.norm.dtype, w: w.norm.ptr, nTokens: b.nLogitRows, hidden: h, eps: c.rmsNormEps, out: ws.normed });
    d.linear({ act, x: ws.normed, wt: w.lmHead.dtype, w: w.lmHead.ptr, m: b.nLogitRows, n: c.vocabSize, k: h, y: ws.logits });
  }

  /** The LoRA modules this batch runs on a projection (none without adapters). */
  private loraModules(b: BatchShape, layer: number, p: Projection): LoraModuleTables[] {
    if (!b.hasLora) return [];
    const all = this.loraTables[layer][p], { parts } = this.layouts[p];
    return b.loraEverywhere ? all : all.filter((_, i) => this.lora.isTargeted(layer, parts[i].module));
  }

  /** y = x @ W^T for a (fused) projection, plus each segment's LoRA delta: one shrink and one expand. */
  private projection(b: BatchShape, layer: number, p: Projection, x: number, y: number, modules = this.loraModules(b, layer, p)): void {
    const W = this.weights.layers[layer][p], { out, in: inDim } = this.layouts[p];
    this.device.linear({ act: this.act, x, wt: W.dtype, w: W.ptr, m: b.nTokens, n: out, k: inDim, y });
    if (modules.length === 0) return;
    const seg = { nSlots: this.lora.numSlots, segIndptr: this.ws.segIndptr, segSlot: this.ws.segSlot, nSegs: b.nSegs, nTokens: b.nTokens };
    const maxRank = this.ws.caps.maxLoraRank;
    this.device.loraShrink({ act: this.act, x, inDim, wt: this.lora.dtype, modules, ...seg, maxRank, tmp: this.ws.loraTmp });
    this.device.loraExpand({ act: this.act, tmp: this.ws.loraTmp, maxRank, wt: this.lora.dtype, modules, ...seg, yWidth: out, y });
  }
}
