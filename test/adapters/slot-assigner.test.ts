// Which adapter sits in which device slot: refcounts and LRU replacement of idle slots only.
import { describe, expect, test } from "bun:test";
import { SlotAssigner } from "../../src/adapters/slot-assigner.ts";

describe("SlotAssigner", () => {
  test("fills free slots first, reuses a resident adapter without loading", () => {
    const s = new SlotAssigner(2);
    expect(s.acquire("a")).toEqual({ slot: 0, load: true, replaced: null });
    expect(s.acquire("b")).toEqual({ slot: 1, load: true, replaced: null });
    expect(s.acquire("a")).toEqual({ slot: 0, load: false, replaced: null });
    expect(s.slotOfAdapter("a")).toBe(0);
    expect(s.slotOfAdapter("c")).toBeUndefined();
  });

  test("null when every slot is in use; a slot frees only when its last user releases", () => {
    const s = new SlotAssigner(2);
    s.acquire("a");
    s.acquire("a");
    s.acquire("b");
    expect(s.acquire("c")).toBeNull();
    expect(s.slotOfAdapter("c")).toBeUndefined();
    s.release("a");
    expect(s.acquire("c")).toBeNull(); // "a" still has one user
    s.release("a");
    expect(s.acquire("c")).toEqual({ slot: 0, load: true, replaced: "a" });
    expect(s.slotOfAdapter("a")).toBeUndefined();
    expect(s.slotOfAdapter("b")).toBe(1); // the busy one was not touched
  });

  test("evicts the least recently used idle slot", () => {
    const s = new SlotAssigner(3);
    for (const n of ["a", "b", "c"]) s.acquire(n);
    s.acquire("a"); // a is now the most recently used
    for (const n of ["a", "a", "b", "c"]) s.release(n);
    expect(s.acquire("d")).toEqual({ slot: 1, load: true, replaced: "b" }); // b: idle and oldest
    s.release("d");
    expect(s.acquire("e")).toEqual({ slot: 2, load: true, replaced: "c" }); // then c
    s.release("e");
    expect(s.acquire("f")).toEqual({ slot: 0, load: true, replaced: "a" }); // then a
    expect(s.acquire("d")).toEqual({ slot: 1, load: false, replaced: null });
  });

  test("an idle but more recent slot is evicted before a busy old one is ever touched", () => {
    const s = new SlotAssigner(2);
    s.acquire("old"); // busy all along
    s.acquire("new");
    s.release("new");
    expect(s.acquire("x")).toEqual({ slot: 1, load: true, replaced: "new" });
    expect(s.slotOfAdapter("old")).toBe(0);
  });

  test("evict refuses an adapter in use; an evicted slot is reused first", () => {
    const s = new SlotAssigner(2);
    s.acquire("a");
    s.acquire("b");
    expect(s.evict("a")).toBe(false);
    expect(s.slotOfAdapter("a")).toBe(0);
    s.release("a");
    expect(s.evict("a")).toBe(true);
    expect(s.slotOfAdapter("a")).toBeUndefined();
    expect(s.evict("never-loaded")).toBe(true);
    expect(s.acquire("c")).toEqual({ slot: 0, load: true, replaced: null }); // "a" left the slot empty
  });

  test("releasing more often than acquiring is an error", () => {
    const s = new SlotAssigner(1);
    s.acquire("a");
    s.release("a");
    expect(() => s.release("a")).toThrow(/released more often/);
    expect(() => s.release("zzz")).toThrow(/released more often/);
  });
});
