// The grammar thread's two hard cases, in the engine: a slow compile ahead of a step's masks defers
// the constrained rows (and only them) until it ends, after which they finish correctly; a thread
// that goes away fails the sequences whose matchers it held, and a new constraint starts a new one.
import { describe, expect, test } from "bun:test";
import type { Sequence } from "../../src/engine/sequence.ts";
import { greedyParams, loadFixtureModel, readReference } from "../helpers/fixtures.ts";

describe("the grammar thread", async () => {
  const model = await loadFixtureModel("tiny-llama2", {});
  const { engine, grammar } = model;
  const prompt = (await readReference("tiny-llama2")).cases[0].prompt_ids;
  const failures = new Map<Sequence, string>();
  engine.events = { ...engine.events, failed: (seq, e) => void failures.set(seq, String(e)) };
  const eos = [...model.config.eosTokenIds];
  const constrained = async (pattern: string, seed: bigint) => engine.add({
    promptIds: prompt, adapter: "es", params: { ...greedyParams(120), temperature: 1, seed, ignoreEos: false, stopTokenIds: eos, grammar: await grammar.compile({ kind: "regex", pattern }, "guided_regex") },
  });
  const free = () => engine.add({ promptIds: prompt, adapter: "fr", params: greedyParams(60) });
  const text = (seq: Sequence) => model.tokenizer.decode(seq.outputs.filter((t) => !eos.includes(t.id)).map((t) => t.id)).trim();
  const solo = (() => {
    const s = free();
    engine.runToCompletion();
    return s.outputs.map((t) => t.id);
  })();

  test("a slow compile (an enum of 6,000 values) defers the constrained row; the free row goes on; both end right", async () => {
    const a = await constrained("[a-z]{40}", 1n), b = free();
    engine.step();
    engine.step();
    const deferredBefore = grammar.stats.deferred, aBefore = a.outputs.length, bBefore = b.outputs.length;
    let compiled = false;
    const slow = grammar.compile({ kind: "json_schema", schema: JSON.stringify({ enum: Array.from({ length: 6000 }, (_, i) => `value-${i}-${(i * 7919) % 10007}`) }) }, "guided_json")
      .then(() => (compiled = true));
    let steps = 0;
    while (!compiled && engine.hasWork) {
      engine.step();
      steps++;
      await Bun.sleep(1); // the thread's reply arrives through the event loop
    }
    await slow;
    const deferred = grammar.stats.deferred - deferredBefore;
    expect(deferred).toBeGreaterThan(3);
    // while it compiled, the free row took a token every step and the constrained one at most the steps not deferred
    expect(b.outputs.length - bBefore).toBeGreaterThanOrEqual(Math.min(steps, 60 - bBefore) - 1);
    expect(a.outputs.length - aBefore).toBeLessThanOrEqual(steps - deferred + 1);
    engine.runToCompletion();
    expect(failures.has(a)).toBe(false);
    expect(text(a)).toMatch(/^[a-z]{40}$/);
    expect(b.outputs.map((t) => t.id)).toEqual(solo);
  }, 120_000);

  test("the thread goes away mid-run: its sequences fail with the reason, the others finish; the next constraint starts a new thread", async () => {
    const a = await constrained("[0-9]{50}", 2n), b = free();
    engine.step();
    engine.step();
    grammar.close();
    engine.runToCompletion();
    expect(failures.get(a)).toContain("guided_regex: the grammar engine is unavailable");
    expect(b.outputs.map((t) => t.id)).toEqual(solo);
    // a new constraint (the same pattern: its cached compile went with the old thread) works again
    const c = await constrained("[0-9]{50}", 3n);
    engine.runToCompletion();
    expect(failures.has(c)).toBe(false);
    expect(text(c)).toMatch(/^[0-9]{50}$/);
    grammar.close();
  }, 120_000);
});
