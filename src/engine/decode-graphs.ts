// Decode steps replayed from recorded graphs: one graph per (batch-size bucket, LoRA or not),
// recorded on first use. A batch is padded to its bucket with dummy sequences that read a reserved
// padding block and write nothing.
import { log } from "../log.ts";
import type { Device } from "../native/device.ts";
import type { HostBatch } from "./batch-builder.ts";

export interface PaddingSpec {
  /** Block index reserved for padding rows (never handed to a sequence). */
  block: number;
  maxBlocksPerSeq: number;
}

export function bucketFor(n: number, maxSeqs: number): number {
  let b = 1;
  while (b < n) b *= 2;
  return Math.min(b, maxSeqs);
}

/** Whether every sequence contributes exactly one token (a pure decode step). */
export function isDecodeBatch(batch: HostBatch): boolean {
  return batch.tokenIds.length === batch.contextLens.length && batch.logitRows.length === batch.contextLens.length;
}

/** The batch grown to `size` sequences; the extra ones are inert (no KV write, no LoRA, a 1-token context). */
export function padDecodeBatch(batch: HostBatch, size: number, pad: PaddingSpec): HostBatch {
  const n = batch.contextLens.length;
  const grow = (a: Int32Array, length: number, fill: number) => {
    const out = new Int32Array(length).fill(fill);
    out.set(a);
    return out;
  };
  const blockTables = grow(batch.blockTables, size * pad.maxBlocksPerSeq, 0);
  for (let s = n; s < size; s++) blockTables[s * pad.maxBlocksPerSeq] = pad.block;
  const nSegs = batch.segSlot.length;
  return {
    tokenIds: grow(batch.tokenIds, size, 0),
    positions: grow(batch.positions, size, 0),
    slotMapping: grow(batch.slotMapping, size, -1),
    qIndptr: Int32Array.from({ length: size + 1 }, (_, i) => i),
    contextLens: grow(batch.contextLens, size, 1),
    blockTables,
    // empty segments after the real ones: the recorded graph always runs `size` segments
    segIndptr: grow(batch.segIndptr, size + 1, batch.segIndptr[nSegs]),
    segSlot: grow(batch.segSlot, size, -1),
    logitRows: Int32Array.from({ length: size }, (_, i) => i),
    maxQLen: 1,
    maxContextLen: batch.maxContextLen,
    hasLora: batch.hasLora,
  };
}

export class DecodeGraphs {
  private readonly graphs = new Map<string, number>();
  private readonly warmed = new Set<string>();
  /** Why recording failed, if it did; decode steps then run eagerly. */
  failure: string | null = null;

  constructor(private readonly device: Device) {}

  /**
   * Runs the step for this key: eagerly the first time (kernels load lazily on first launch, which
   * must not happen inside a recording), recorded the second time, replayed from then on.
   */
  launch(size: number, hasLora: boolean, record: () => void): void {
    const key = `${size}:${hasLora}`;
    if (this.failure !== null || !this.warmed.has(key)) {
      this.warmed.add(key);
      record();
      return;
    }
    let graph = this.graphs.get(key);
    if (graph === undefined) {
      try {
        this.device.graphBegin();
        try {
          record();
        } finally {
          graph = this.device.graphEnd();
        }
      } catch (e) {
        // a step that cannot be recorded still has to run: eagerly, from now on
        this.failure = (e as Error).message;
        log.warn(`decode graphs disabled: ${this.failure}`);
        record();
        return;
      }
      this.graphs.set(key, graph);
    }
    this.device.graphLaunch(graph);
  }

  get count(): number {
    return this.graphs.size;
  }

  free(): void {
    for (const g of this.graphs.values()) this.device.graphDestroy(g);
    this.graphs.clear();
  }
}
