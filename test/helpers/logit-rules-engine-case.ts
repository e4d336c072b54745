// The engine case behind test/engine/logit-rules.test.ts (CPU twin) and test/gpu/sampling-cuda.test.ts:
// one batch in which every sequence has its own penalties, logit_bias and min_p (and adapter); each
// generated token must be the one a reference computed here picks from the raw logits of the same
// prefix (greedy: argmax; seeded: the walk over the kept distribution). A grammar-constrained row
// runs in the same batch.
import { describe, expect, test } from "bun:test";
import type { LoadedModel } from "../../src/engine/load-model.ts";
import { uniformFor, type SamplingParams } from "../../src/engine/sampling.ts";
import type { NumericDType } from "../../src/native/device.ts";
import { greedyParams, readReference } from "./fixtures.ts";
import { ruledRow } from "./logit-rules-reference.ts";
import { roundToDtype } from "../../src/model/convert.ts";

const f = Math.fround;
const STEPS = 10;

/** The rules of loracuda.h on one row (the shared reference), from the prefix's prompt and outputs. */
function ruled(raw: Float32Array, p: SamplingParams, prompt: number[], outputs: number[]): Float32Array {
  const counts = new Map<number, number>();
  for (const id of outputs) counts.set(id, (counts.get(id) ?? 0) + 1);
  const inPrompt = new Set(prompt);
  return ruledRow(raw, {
    bias: p.logitBias,
    penalties: {
      presence: p.presencePenalty ?? 0, frequency: p.frequencyPenalty ?? 0, repetition: p.repetitionPenalty ?? 1,
      outputCounts: (v) => counts.get(v) ?? 0, inPrompt: (v) => inPrompt.has(v),
    },
  });
}

/** The sampled id and how far the decision was from flipping (relative mass; Infinity for a clear argmax). */
function pick(l: Float32Array, p: SamplingParams, u: number): { id: number; margin: number } {
  const order = Array.from(l.keys()).sort((a, b) => l[b] - l[a] || a - b);
  if (p.temperature === 0) return { id: order[0], margin: l[order[0]] - l[order[1]] };
  const top = l[order[0]], t = f(p.temperature), minLog = p.minP ? f(Math.log(p.minP)) : -Infinity;
  const topK = order.slice(0, p.topK > 0 ? p.topK : order.length), scaled = (i: number) => f(f(l[i] - top) / t);
  let kept = topK.filter((i) => scaled(i) >= minLog);
  // a token at the min_p cut (kept or not) moves the kept mass: its distance from the cut counts too
  const cut = p.minP ? Math.min(...[kept[kept.length - 1], topK[kept.length]].filter((i) => i !== undefined).map((i) => Math.abs(scaled(i) - minLog))) : Infinity;
  const w = (i: number) => Math.exp((l[i] - top) / t);
  let mass = kept.reduce((s, i) => s + w(i), 0);
  if (p.topP < 1) {
    let cum = 0, n = 0;
    while (n < kept.length && cum < f(p.topP) * mass) cum += w(kept[n++]);
    kept = kept.slice(0, Math.max(n, 1));
    mass = kept.reduce((s, i) => s + w(i), 0);
  }
  const target = f(u) * mass;
  let cum = 0;
  for (const i of kept) {
    const before = cum;
    cum += w(i);
    if (cum > target) return { id: i, margin: Math.min(cut, (target - before) / mass, (cum - target) / mass) };
  }
  return { id: kept[kept.length - 1], margin: 0 };
}

/**
 * The engine case, on any loaded tiny-llama2: `act` is the logits' dtype (the device rounds ruled
 * logits to it once), `slack` how far a decode step's logits may sit from the same prefix's prefill
 * logits on that backend (0 on the CPU twin, which computes both alike; a picked token whose margin
 * is within it is not compared).
 */
export function logitRulesEngineCase(label: string, load: () => Promise<LoadedModel | null>, o: { act: NumericDType; slack: number; test: typeof test; seeded: boolean }) {
describe(`${label}: penalties, logit_bias and min_p, each sequence of one batch with its own; a grammar row beside them`, async () => {
  const model = await load();
  if (!model) return;
  const { engine } = model;
  const prompt = (await readReference("tiny-llama2")).cases[0].prompt_ids;
  const adapters = [null, ...model.adapters.names()];
  const greedy = greedyParams(STEPS);
  // the plain greedy run: the token it takes first is biased against below, so that bias must show
  const plainSeq = engine.add({ promptIds: prompt, adapter: null, params: greedy });
  engine.runToCompletion();
  const plain = plainSeq.outputs.map((t) => t.id);
  // [label, settings, the same with the named rule off]. A random-weight model seldom repeats a token
  // by itself, so one is favoured (logit_bias: `lead` above the first step's best) until a penalty stops it.
  const first = engine.promptLogits([{ promptIds: prompt, adapter: null }])[0].slice(-model.config.vocabSize);
  const X = 29889, favour = (lead: number) => new Map([[X, Math.max(...first) - first[X] + lead]]);
  const cases: [string, Partial<SamplingParams>, Partial<SamplingParams>][] = [
    ["presence_penalty 2 on a favoured token", { presencePenalty: 2, logitBias: favour(0.3) }, { presencePenalty: 0 }],
    ["frequency_penalty 2 on a favoured token", { frequencyPenalty: 2, logitBias: favour(5) }, { frequencyPenalty: 0 }],
    ["repetition_penalty 1.8 on a favoured token", { repetitionPenalty: 1.8, logitBias: favour(0.3) }, { repetitionPenalty: 1 }],
    ["presence_penalty 1 and frequency_penalty 1 on a favoured token", { presencePenalty: 1, frequencyPenalty: 1, logitBias: favour(0.3) }, { presencePenalty: 0, frequencyPenalty: 0 }],
    ["logit_bias", { logitBias: new Map([[plain[0], -100], [plain[1], -30], [13, 25]]) }, { logitBias: undefined }],
    ["min_p 0.3 seeded at T 1.3", { temperature: 1.3, minP: 0.3, seed: 7n }, { minP: 0 }],
    ["everything seeded", { temperature: 0.9, topK: 40, topP: 0.95, minP: 0.05, presencePenalty: 0.5, frequencyPenalty: 0.3, repetitionPenalty: 1.2, logitBias: new Map([[plain[0], -5]]), seed: 11n },
      { minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, logitBias: undefined }],
    ["plain seeded", { temperature: 1, seed: 3n }, {}],
    ["plain greedy", {}, {}],
  ];
  const seqs = cases.map(([, extra], i) => engine.add({ promptIds: prompt, adapter: i === 0 ? null : adapters[i % adapters.length], params: { ...greedy, ...extra } }));
  // a constrained row in the same batch: its mask goes through the same rules op
  const grammar = await model.grammar.compile({ kind: "regex", pattern: "[a-z]{2,5}-[0-9]{2}" }, "guided_regex");
  const constrained = engine.add({ promptIds: prompt, adapter: "es", params: { ...greedy, maxTokens: 40, temperature: 1, seed: 5n, ignoreEos: false, stopTokenIds: [...model.config.eosTokenIds], grammar } });
  engine.runToCompletion();

  o.test("the constrained row's text matches its regex", () => {
    expect(constrained.finishReason).toBe("stop");
    expect(model.tokenizer.decode(constrained.outputs.slice(0, -1).map((t) => t.id)).trim()).toMatch(/^[a-z]{2,5}-[0-9]{2}$/);
  });

  cases.forEach(([label, extra], c) => {
    // a seeded pick depends on the whole kept distribution: where decode and prefill logits differ
    // (a GPU), the op-level tests (test/gpu/logit-rules.test.ts) carry the seeded checks instead
    const seeded = (extra.temperature ?? 0) > 0;
    if (seeded && !o.seeded) console.log(`SKIP ${label} on ${o.act}: a seeded pick on a GPU is checked by the op-level tests (test/gpu/logit-rules.test.ts)`);
    (seeded && !o.seeded ? test.skip : o.test)(`${label}: every token is the reference's pick from the raw logits of its prefix`, () => {
      const seq = seqs[c], out = seq.outputs.map((t) => t.id);
      expect(out.length).toBe(STEPS);
      let checked = 0;
      for (let k = 0; k < STEPS; k++) {
        const prefix = [...prompt, ...out.slice(0, k)];
        const all = engine.promptLogits([{ promptIds: prefix, adapter: seq.adapter }])[0];
        const raw = all.subarray(all.length - model.config.vocabSize);
        const want = pick(roundToDtype(ruled(raw, seq.params, prompt, out.slice(0, k)), o.act), seq.params, uniformFor(seq.params.seed, k));
        // a choice within 1e-6 of flipping may go either way between fp32 and this float64 walk; on a GPU,
        // decode and prefill logits of one prefix differ by up to `slack`
        if (want.margin < Math.max(1e-6, o.slack)) {
          console.log(`${label}: step ${k} is within ${want.margin} of a tie, not compared`);
          continue;
        }
        expect(`${k}: ${out[k]}`).toBe(`${k}: ${want.id}`);
        checked++;
      }
      expect(checked).toBeGreaterThan(STEPS / 2);
    });
  });

  o.test("the rules change what is generated (the cases exercise what they name)", () => {
    const plainOf = (c: number) => {
      const s = engine.add({ promptIds: prompt, adapter: seqs[c].adapter, params: { ...seqs[c].params, ...cases[c][2] } });
      engine.runToCompletion();
      return s.outputs.map((t) => t.id).join(",");
    };
    cases.forEach(([label], c) => {
      const same = plainOf(c) === seqs[c].outputs.map((t) => t.id).join(",");
      expect(`${label}: ${same ? "unchanged" : "changed"}`).toBe(`${label}: ${label.startsWith("plain") ? "unchanged" : "changed"}`);
    });
  });
});
}
