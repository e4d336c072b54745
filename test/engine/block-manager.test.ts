// The paged KV block allocator, on its own.
import { describe, expect, test } from "bun:test";
import { BlockManager } from "../../src/engine/block-manager.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import { greedyParams } from "../helpers/fixtures.ts";

const seq = (id: number, promptLen: number) => new Sequence(id, Array.from({ length: promptLen }, (_, i) => i + 1), null, greedyParams(4));

describe("BlockManager", () => {
  test("blocksFor / missingBlocks round up to whole blocks", () => {
    const bm = new BlockManager(8, 4);
    const s = seq(0, 5);
    expect([0, 1, 4, 5, 8, 9].map((n) => bm.blocksFor(n))).toEqual([0, 1, 1, 2, 2, 3]);
    expect(bm.missingBlocks(s, 5)).toBe(2);
    expect(bm.ensure(s, 5)).toBe(true);
    expect(bm.missingBlocks(s, 8)).toBe(0);
    expect(bm.missingBlocks(s, 9)).toBe(1);
    expect(bm.missingBlocks(s, 3)).toBe(0); // never negative
  });

  test("ensure grows a table from the lowest free blocks and is idempotent", () => {
    const bm = new BlockManager(8, 4);
    const a = seq(0, 5), b = seq(1, 3);
    expect(bm.ensure(a, 5)).toBe(true);
    expect(a.blockTable).toEqual([0, 1]);
    expect(bm.ensure(a, 5)).toBe(true);
    expect(a.blockTable).toEqual([0, 1]);
    expect(bm.ensure(b, 3)).toBe(true);
    expect(b.blockTable).toEqual([2]);
    expect(bm.ensure(a, 9)).toBe(true); // grows by one, not contiguous with its first two
    expect(a.blockTable).toEqual([0, 1, 3]);
    expect(bm.freeBlocks).toBe(4);
  });

  test("ensure takes nothing when the blocks do not suffice", () => {
    const bm = new BlockManager(3, 4);
    const a = seq(0, 4), b = seq(1, 8);
    expect(bm.ensure(a, 4)).toBe(true);
    expect(bm.ensure(b, 12)).toBe(false);
    expect(b.blockTable).toEqual([]);
    expect(bm.freeBlocks).toBe(2);
    expect(bm.ensure(b, 8)).toBe(true);
    expect(bm.freeBlocks).toBe(0);
    expect(bm.ensure(a, 5)).toBe(false);
    expect(a.blockTable).toEqual([0]);
  });

  test("release frees every block, resets the sequence, and the blocks are reused (non-contiguously)", () => {
    const bm = new BlockManager(6, 4);
    const a = seq(0, 8), b = seq(1, 4), c = seq(2, 12);
    bm.ensure(a, 8);
    bm.ensure(b, 4);
    a.numComputed = 8;
    bm.release(a);
    expect(a.blockTable).toEqual([]);
    expect(a.numComputed).toBe(0);
    expect(bm.freeBlocks).toBe(5);
    expect(bm.ensure(c, 12)).toBe(true);
    expect(c.blockTable).toEqual([0, 1, 3]);
    // every block is owned exactly once
    expect(bm.ensure(a, 8)).toBe(true);
    expect([...a.blockTable, ...b.blockTable, ...c.blockTable].sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(bm.freeBlocks).toBe(0);
    for (const s of [a, b, c]) bm.release(s);
    expect(bm.freeBlocks).toBe(6);
  });
});
