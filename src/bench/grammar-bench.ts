// The cost of structured output in the step loop: `seqs` sequences, each under its own random JSON
// schema, run to the end; then the same sequences (same prompts and seeds) with no constraint. Per
// step: the grammar thread's mask time, what of it the engine thread waited for after its forward
// pass (the part not hidden), and the step's wall time; the two runs side by side give the ratio.
import type { LoadedModel } from "../engine/load-model.ts";
import type { SamplingParams } from "../engine/sampling.ts";
import { randomSchema, seededRandom } from "./random-schema.ts";
import { percentile } from "./serve/stats.ts";

export interface GrammarBenchReport {
  seqs: number;
  vocab: number;
  device: string;
  compileMs: { median: number; max: number; cached: number };
  constrained: { steps: number; stepMsMedian: number; maskMsMedian: number; waitedMsMedian: number; maskShareOfStep: number; exposedShareOfStep: number; deferredSteps: number };
  free: { steps: number; stepMsMedian: number };
  /** Constrained step time over free step time, measured side by side. */
  stepRatio: number;
}

const median = (xs: number[]) => percentile(xs, 50);

export async function runGrammarBench(model: LoadedModel, o: { seqs: number; maxTokens: number; device: string }): Promise<GrammarBenchReport> {
  const rand = seededRandom(7), g = model.grammar;
  const prompt = model.tokenizer.encode("Return the record as JSON:");
  const compileTimes: number[] = [];
  const refs: { key: string; field: string }[] = [];
  for (let i = 0; i < o.seqs; i++) {
    const t0 = performance.now();
    refs.push(await g.compile({ kind: "json_schema", schema: JSON.stringify(randomSchema(rand)) }, "response_format"));
    compileTimes.push(performance.now() - t0);
  }
  const t0 = performance.now();
  await g.compile({ kind: "json_schema", schema: JSON.stringify(randomSchema(seededRandom(7))) }, "response_format"); // the first one again: cached
  const cached = performance.now() - t0;
  const params = (i: number): SamplingParams => ({
    temperature: 1, topP: 1, topK: 0, seed: BigInt(i), maxTokens: o.maxTokens, topLogprobs: 0, ignoreEos: false,
    stopTokenIds: [...model.config.eosTokenIds],
  });
  const run = (each: (i: number) => SamplingParams) => {
    const seqs = Array.from({ length: o.seqs }, (_, i) => model.engine.add({ promptIds: prompt, adapter: null, params: each(i) }));
    model.engine.step(); // the prefill
    const steps: { ms: number; maskMs: number; waitedMs: number }[] = [];
    while (model.engine.hasWork) {
      const before = { ...g.stats }, t = performance.now();
      model.engine.step();
      steps.push({ ms: performance.now() - t, maskMs: (g.stats.maskUs - before.maskUs) / 1000, waitedMs: (g.stats.waitedUs - before.waitedUs) / 1000 });
    }
    return { steps, lengths: seqs.map((s) => s.outputs.length) };
  };
  const deferredBefore = g.stats.deferred;
  const { steps: con, lengths } = run((i) => ({ ...params(i), grammar: refs[i] }));
  const deferred = g.stats.deferred - deferredBefore;
  // free: each sequence generates as many tokens as its constrained run did, so every step has the same batch
  const { steps: free } = run((i) => ({ ...params(i), maxTokens: lengths[i], ignoreEos: true }));
  const stepMs = median(con.map((s) => s.ms)), maskMs = median(con.map((s) => s.maskMs)), waitedMs = median(con.map((s) => s.waitedMs));
  const freeMs = median(free.map((s) => s.ms));
  return {
    seqs: o.seqs, vocab: model.config.vocabSize, device: o.device,
    compileMs: { median: median(compileTimes), max: Math.max(...compileTimes), cached },
    constrained: { steps: con.length, stepMsMedian: stepMs, maskMsMedian: maskMs, waitedMsMedian: waitedMs, maskShareOfStep: maskMs / stepMs, exposedShareOfStep: waitedMs / stepMs, deferredSteps: deferred },
    free: { steps: free.length, stepMsMedian: freeMs },
    stepRatio: stepMs / freeMs,
  };
}
