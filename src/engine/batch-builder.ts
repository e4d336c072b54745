// Turns the sequences scheduled for one step into the typed arrays the forward pass reads.
import type { Sequence } from "./sequence.ts";

export interface ScheduledSeq {
  seq: Sequence;
  /** Tokens computed this step: [seq.numComputed, seq.numComputed + numTokens). */
  numTokens: number;
  /** LoRA slot of its adapter, -1 for the base model. */
  slot: number;
  /** Sample a token after this step (its last token is the sequence's newest). */
  sample: boolean;
  /** Also compute logits at every prompt position but the last (for prompt log-probabilities). */
  promptRows?: boolean;
}

export interface HostBatch {
  tokenIds: Int32Array;
  positions: Int32Array;
  slotMapping: Int32Array;
  qIndptr: Int32Array;
  contextLens: Int32Array;
  /** [nSeqs, maxBlocksPerSeq]; unused entries are 0 (never read: context_lens bounds them). */
  blockTables: Int32Array;
  segIndptr: Int32Array;
  segSlot: Int32Array;
  /** Token rows whose logits are computed: one per sampling item, in item order, then the prompt rows. */
  logitRows: Int32Array;
  maxQLen: number;
  maxContextLen: number;
  hasLora: boolean;
}

export function buildBatch(items: ScheduledSeq[], blockSize: number, maxBlocksPerSeq: number, allLogits = false): HostBatch {
  const nTokens = items.reduce((n, it) => n + it.numTokens, 0);
  const tokenIds = new Int32Array(nTokens), positions = new Int32Array(nTokens), slotMapping = new Int32Array(nTokens);
  const qIndptr = new Int32Array(items.length + 1), contextLens = new Int32Array(items.length);
  const blockTables = new Int32Array(items.length * maxBlocksPerSeq);
  const segIndptr: number[] = [0], segSlot: number[] = [];
  const logitRows: number[] = [], promptRows: number[] = [];
  let t = 0, maxQLen = 0, maxContextLen = 0;
  items.forEach((it, s) => {
    const { seq } = it;
    const start = seq.numComputed, end = start + it.numTokens;
    if (seq.blockTable.length > maxBlocksPerSeq) throw new Error(`sequence ${seq.id} needs ${seq.blockTable.length} blocks, max ${maxBlocksPerSeq}`);
    for (let p = start; p < end; p++, t++) {
      tokenIds[t] = seq.tokenAt(p);
      positions[t] = p;
      slotMapping[t] = seq.blockTable[Math.floor(p / blockSize)] * blockSize + (p % blockSize);
      if (allLogits) logitRows.push(t);
      else if (it.promptRows && p < seq.promptIds.length - 1) promptRows.push(t);
    }
    if (!allLogits && it.sample) logitRows.push(t - 1);
    qIndptr[s + 1] = t;
    contextLens[s] = end;
    blockTables.set(seq.blockTable, s * maxBlocksPerSeq);
    maxQLen = Math.max(maxQLen, it.numTokens);
    maxContextLen = Math.max(maxContextLen, end);
    // consecutive sequences with the same adapter share one LoRA segment
    if (segSlot.length > 0 && segSlot[segSlot.length - 1] === it.slot) segIndptr[segIndptr.length - 1] = t;
    else {
      segSlot.push(it.slot);
      segIndptr.push(t);
    }
  });
  return {
    tokenIds, positions, slotMapping, qIndptr, contextLens, blockTables,
    segIndptr: Int32Array.from(segIndptr), segSlot: Int32Array.from(segSlot), logitRows: Int32Array.from([...logitRows, ...promptRows]),
    maxQLen, maxContextLen, hasLora: segSlot.some((s) => s >= 0),
  };
}
