// buildBatch: the host arrays of one mixed prefill + decode step, computed by hand.
import { describe, expect, test } from "bun:test";
import { buildBatch } from "../../src/engine/batch-builder.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import { greedyParams } from "../helpers/fixtures.ts";

const BS = 4;

function make(id: number, prompt: number[], outputs: number[], blocks: number[], computed: number): Sequence {
  const s = new Sequence(id, prompt, null, greedyParams(10));
  for (const t of outputs) s.outputs.push({ id: t, logprob: 0, topLogprobs: [] });
  s.blockTable = blocks;
  s.numComputed = computed;
  return s;
}

describe("buildBatch", () => {
  // A: prefill of 6 prompt tokens in blocks [5, 2]. B: decode of its 2nd output at position 5,
  // blocks [7, 1]. C: decode at position 2 in block [3], same adapter slot as B. D: prefill of 2, base.
  const a = make(0, [10, 11, 12, 13, 14, 15], [], [5, 2], 0);
  const b = make(1, [20, 21, 22, 23], [24, 25], [7, 1], 5);
  const c = make(2, [30, 31], [32], [3], 2);
  const d = make(3, [40, 41], [], [0], 0);
  const items = [
    { seq: a, numTokens: 6, slot: 0, sample: true },
    { seq: b, numTokens: 1, slot: 2, sample: true },
    { seq: c, numTokens: 1, slot: 2, sample: true },
    { seq: d, numTokens: 2, slot: -1, sample: false },
  ];

  test("tokens, positions, slot mapping through non-contiguous blocks", () => {
    const batch = buildBatch(items, BS, 3);
    expect([...batch.tokenIds]).toEqual([10, 11, 12, 13, 14, 15, 25, 32, 40, 41]);
    expect([...batch.positions]).toEqual([0, 1, 2, 3, 4, 5, 5, 2, 0, 1]);
    // slot = block * 4 + position % 4
    expect([...batch.slotMapping]).toEqual([20, 21, 22, 23, 8, 9, 1 * 4 + 1, 3 * 4 + 2, 0, 1]);
    expect([...batch.qIndptr]).toEqual([0, 6, 7, 8, 10]);
    expect([...batch.contextLens]).toEqual([6, 6, 3, 2]);
    expect([...batch.blockTables]).toEqual([5, 2, 0, 7, 1, 0, 3, 0, 0, 0, 0, 0]);
    expect(batch.maxQLen).toBe(6);
    expect(batch.maxContextLen).toBe(6);
  });

  test("segments merge adjacent sequences of the same slot", () => {
    const batch = buildBatch(items, BS, 3);
    expect([...batch.segSlot]).toEqual([0, 2, -1]);
    expect([...batch.segIndptr]).toEqual([0, 6, 8, 10]);
    expect(batch.hasLora).toBe(true);
    // the same slot, not adjacent: two segments
    const split = buildBatch([items[1], items[3], items[2]], BS, 3);
    expect([...split.segSlot]).toEqual([2, -1, 2]);
    expect([...split.segIndptr]).toEqual([0, 1, 3, 4]);
    const baseOnly = buildBatch([items[3]], BS, 3);
    expect([...baseOnly.segSlot]).toEqual([-1]);
    expect(baseOnly.hasLora).toBe(false);
  });

  test("logit rows: the last token of each sampled sequence, or every token", () => {
    expect([...buildBatch(items, BS, 3).logitRows]).toEqual([5, 6, 7]);
    expect([...buildBatch(items, BS, 3, true).logitRows]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("a block table longer than maxBlocksPerSeq is refused", () => {
    expect(() => buildBatch(items, BS, 1)).toThrow(/needs 2 blocks, max 1/);
  });
});
