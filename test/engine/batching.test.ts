// Batching must not change any sequence's result: mixed adapters, prefill with decode, seeded
// sampling, preemption under a tiny KV cache; and Engine.add's request errors.
import { describe, expect, test } from "bun:test";
import { UnknownAdapterError } from "../../src/adapters/adapter-store.ts";
import type { Engine } from "../../src/engine/engine.ts";
import { RequestError } from "../../src/engine/request-check.ts";
import { KvCache } from "../../src/engine/kv-cache.ts";
import { SamplingError, type SamplingParams } from "../../src/engine/sampling.ts";
import type { GeneratedToken, Sequence } from "../../src/engine/sequence.ts";
import { readModelConfig } from "../../src/model/config.ts";
import { MODEL_NAMES, greedyParams, loadFixtureModel, modelDir, readReference, type ReferenceCase } from "../helpers/fixtures.ts";
import { thrown } from "../helpers/thrown.ts";

// The CPU twin computes every token row on its own (same loops, same summation order whatever the
// batch holds; attention reads only its own sequence's blocks; LoRA applies per segment), so a
// sequence's results inside a batch must be bit-identical to its single run: no tolerance.

/** Index of the first element whose bits differ, or -1. */
function firstBitDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return -2;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

const tokens = (s: Sequence): GeneratedToken[] => s.outputs.map((t) => ({ ...t }));

function runAlone(engine: Engine, promptIds: number[], adapter: string | null, params: SamplingParams): GeneratedToken[] {
  const seq = engine.add({ promptIds, adapter, params });
  engine.runToCompletion();
  expect(seq.outputs.length).toBe(params.maxTokens);
  return tokens(seq);
}

const sampled = (seed: bigint, maxTokens = 8): SamplingParams => ({
  temperature: 0.8, topP: 0.9, topK: 50, seed, maxTokens, topLogprobs: 2, ignoreEos: true, stopTokenIds: [],
});

function promptsOf(cases: ReferenceCase[]): ReferenceCase[] {
  return cases.filter((c) => c.adapter === null);
}

for (const name of MODEL_NAMES) {
  describe(`${name}: every adapter and the base in one batch`, async () => {
    const ref = await readReference(name);
    const model = await loadFixtureModel(name, { maxLogitRows: 1024, maxTokens: 1024 });
    const { engine } = model;
    const vocab = model.config.vocabSize;
    const prompts = promptsOf(ref.cases);
    const who: (string | null)[] = [null, ...model.adapters.names()];
    const reqs = who.map((adapter, i) => ({ adapter, promptIds: prompts[i % prompts.length].prompt_ids }));

    test("promptLogits: the batch gives each sequence its single-run logits, bit for bit", () => {
      expect(who.length).toBe(name === "tiny-llama2" ? 7 : 3);
      const singles = reqs.map((r) => engine.promptLogits([r])[0]);
      const batch = engine.promptLogits(reqs);
      reqs.forEach((r, i) => {
        expect(firstBitDiff(batch[i], singles[i])).toBe(-1);
        // and the single run is the right one: its last-position argmax is HF's (same adapter, prompt)
        const c = ref.cases.find((x) => x.adapter === r.adapter && x.prompt === prompts[i % prompts.length].prompt)!;
        const last = batch[i].subarray(batch[i].length - vocab);
        const argmax = last.indexOf(Math.max(...last));
        expect(argmax).toBe(c.topk_ids[c.topk_ids.length - 1][0]);
      });
    });

    test("generation: greedy tokens, logprobs and top logprobs equal the single runs", () => {
      const params = greedyParams(8, 3);
      const singles = reqs.map((r) => runAlone(engine, r.promptIds, r.adapter, params));
      const seqs = reqs.map((r) => engine.add({ ...r, params }));
      engine.runToCompletion();
      seqs.forEach((s, i) => expect(tokens(s)).toEqual(singles[i]));
      // the runs are not all alike (adapters change the continuation)
      expect(new Set(singles.map((t) => t.map((x) => x.id).join())).size).toBeGreaterThan(1);
    });

    test("seeded sampling: same tokens alone, twice, and inside a batch; other seeds differ", () => {
      const r = reqs[reqs.length - 1];
      const alone = runAlone(engine, r.promptIds, r.adapter, sampled(42n));
      expect(runAlone(engine, r.promptIds, r.adapter, sampled(42n))).toEqual(alone);
      const others = reqs.slice(0, -1).map((o, i) => engine.add({ ...o, params: i % 2 ? greedyParams(5) : sampled(BigInt(i), 11) }));
      const inBatch = engine.add({ ...r, params: sampled(42n) });
      engine.runToCompletion();
      expect(tokens(inBatch)).toEqual(alone);
      expect(others.every((o) => o.finished)).toBe(true);
      const otherSeeds = [1n, 2n, 3n, 4n].map((seed) => runAlone(engine, r.promptIds, r.adapter, sampled(seed)).map((t) => t.id));
      expect(otherSeeds.some((ids) => ids.join() !== alone.map((t) => t.id).join())).toBe(true);
    });
  });
}

describe("tiny-llama2 under a 6-block KV cache", async () => {
  const ref = await readReference("tiny-llama2");
  const prompts = promptsOf(ref.cases).filter((c) => c.prompt !== "long"); // 13, 30, 27 tokens
  const config = readModelConfig(modelDir("tiny-llama2"));
  const small = await loadFixtureModel("tiny-llama2", { blockSize: 16, kvCacheBytes: 6 * KvCache.blockBytes(config, 16, "F32") });
  const roomy = await loadFixtureModel("tiny-llama2");

  test("requests that together exceed the cache are preempted and still match their single runs", () => {
    expect(small.runner.opts.numBlocks).toBe(6);
    // each fits alone (<= 50 tokens = 4 blocks), together they need 15 blocks
    const reqs = [null, "es", "fr", "rs"].map((adapter, i) => ({ adapter, promptIds: prompts[i % 3].prompt_ids, params: greedyParams(20, 2) }));
    const singles = reqs.map((r) => runAlone(roomy.engine, r.promptIds, r.adapter, r.params));
    const engine = small.engine as unknown as { preempt: (s: Sequence) => void };
    const preempt = engine.preempt.bind(engine);
    let preemptions = 0;
    engine.preempt = (s) => {
      preemptions++;
      preempt(s);
    };
    try {
      const seqs = reqs.map((r) => small.engine.add(r));
      small.engine.runToCompletion();
      expect(preemptions).toBeGreaterThan(0);
      seqs.forEach((s, i) => expect(tokens(s)).toEqual(singles[i]));
    } finally {
      delete (engine as { preempt?: unknown }).preempt;
    }
  });

  test("a request the whole cache cannot hold is refused at add, and does not block the queue", () => {
    const p = prompts[0].prompt_ids;
    expect(() => small.engine.add({ promptIds: p, adapter: null, params: greedyParams(96 - p.length + 1) })).toThrow(RequestError);
    expect(small.engine.hasWork).toBe(false);
    const ok = small.engine.add({ promptIds: p, adapter: null, params: greedyParams(96 - p.length) }); // exactly 6 blocks
    small.engine.runToCompletion();
    expect(ok.outputs.length).toBe(96 - p.length);
  });
});

describe("Engine.add request errors", async () => {
  const ref = await readReference("tiny-llama2");
  const model = await loadFixtureModel("tiny-llama2");
  const { engine } = model;
  const c = ref.cases.find((x) => x.adapter === "es" && x.prompt === "plain")!;
  const expected = runAlone(engine, c.prompt_ids, "es", greedyParams(6, 1));
  test("the valid request used below gives HF's greedy tokens", () => {
    expect(expected.map((t) => t.id)).toEqual(c.greedy_ids.slice(0, 6));
  });

  const ok = c.prompt_ids;
  const bad: [string, () => unknown, new (...a: never[]) => Error, RegExp][] = [
    ["empty prompt", () => engine.add({ promptIds: [], adapter: null, params: greedyParams(4) }), RequestError, /empty/],
    ["token id = vocab", () => engine.add({ promptIds: [...ok, 32000], adapter: null, params: greedyParams(4) }), RequestError, /32000 is outside the vocabulary \[0, 32000\)/],
    ["negative token id", () => engine.add({ promptIds: [-1], adapter: null, params: greedyParams(4) }), RequestError, /-1 is outside/],
    ["fractional token id", () => engine.add({ promptIds: [1.5], adapter: null, params: greedyParams(4) }), RequestError, /1.5 is outside/],
    ["prompt + max_tokens over the context", () => engine.add({ promptIds: ok, adapter: null, params: greedyParams(512 - ok.length + 1) }), RequestError, /513 tokens, over the context length 512/],
    ["negative temperature", () => engine.add({ promptIds: ok, adapter: null, params: { ...greedyParams(4), temperature: -0.5 } }), SamplingError, /temperature/],
    ["NaN temperature", () => engine.add({ promptIds: ok, adapter: null, params: { ...greedyParams(4), temperature: NaN } }), SamplingError, /temperature/],
    ["infinite temperature", () => engine.add({ promptIds: ok, adapter: null, params: { ...greedyParams(4), temperature: Infinity } }), SamplingError, /temperature/],
    ["top_p 0", () => engine.add({ promptIds: ok, adapter: null, params: { ...greedyParams(4), topP: 0 } }), SamplingError, /top_p/],
    ["top_p 1.5", () => engine.add({ promptIds: ok, adapter: null, params: { ...greedyParams(4), topP: 1.5 } }), SamplingError, /top_p/],
    ["top_k -1", () => engine.add({ promptIds: ok, adapter: null, params: { ...greedyParams(4), topK: -1 } }), SamplingError, /top_k/],
    ["top_k 2.5", () => engine.add({ promptIds: ok, adapter: null, params: { ...greedyParams(4), topK: 2.5 } }), SamplingError, /top_k/],
    ["max_tokens 0", () => engine.add({ promptIds: ok, adapter: null, params: greedyParams(0) }), SamplingError, /max_tokens/],
    ["top_logprobs 21", () => engine.add({ promptIds: ok, adapter: null, params: greedyParams(4, 21) }), SamplingError, /top_logprobs/],
    ["top_logprobs -1", () => engine.add({ promptIds: ok, adapter: null, params: greedyParams(4, -1) }), SamplingError, /top_logprobs/],
    ["unknown adapter", () => engine.add({ promptIds: ok, adapter: "klingon", params: greedyParams(4) }), UnknownAdapterError, /"klingon" is not known/],
  ];
  for (const [label, fn, cls, message] of bad) {
    test(`${label}, then a valid request is served correctly`, () => {
      const err = thrown(fn);
      expect(err).toBeInstanceOf(cls);
      expect((err as Error).message).toMatch(message);
      expect(engine.hasWork).toBe(false); // nothing half-queued
      expect(runAlone(engine, ok, "es", greedyParams(6, 1))).toEqual(expected);
    });
  }
});
