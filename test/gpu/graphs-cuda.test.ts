// Decode steps replayed from recorded CUDA graphs give the tokens of eager execution. Skipped,
// with the reason printed, where no GPU is present.
import { describe, expect, test } from "bun:test";
import { openCuda } from "./harness.ts";
import { loadModel } from "../../src/engine/load-model.ts";
import type { Sequence } from "../../src/engine/sequence.ts";
import { adaptersDir, greedyParams, modelDir, readReference } from "../helpers/fixtures.ts";

const cuda = await openCuda("test/gpu/graphs-cuda.test.ts");
const gpuTest = cuda ? test : test.skip;

// Graph replays pad a batch to its bucket (GEMMs over more rows may pick other cuBLAS kernels), so
// logits may differ in the last fp16 bits: tokens must agree wherever the top-2 margin exceeds
// 0.1 (twice the fp16 bound of test/gpu/fixtures-cuda.test.ts), log-probabilities within 0.05.
const MARGIN = 0.1;

describe("CUDA graphs", () => {
  /** Runs one sequence per adapter that adapterOf picks (null: the base model) to completion, eager or through graphs. */
  const run = async (adapterOf: (names: string[]) => (string | null)[], graphs: boolean, expectRecorded: number) => {
    const ref = await readReference("tiny-llama2");
    const model = loadModel({ modelDir: modelDir("tiny-llama2"), adaptersDir: adaptersDir("tiny-llama2"), device: cuda!, graphs });
    const seqs: Sequence[] = adapterOf(model.adapters.names()).map((adapter, i) => {
      const c = ref.cases.filter((x) => x.adapter === adapter)[i % 4];
      return model.engine.add({ promptIds: c.prompt_ids, adapter, params: greedyParams(16, 2) });
    });
    model.engine.runToCompletion();
    const stats = model.runner.graphStats();
    model.runner.free();
    if (graphs) {
      expect(stats.failure).toBeNull();
      expect(stats.recorded).toBe(expectRecorded);
    }
    return seqs;
  };

  // batch 1 without an adapter: the same one-row kernels (fused q|k|v + RoPE, gate|up + silu) eager and
  // replayed, no padding, so the same bits
  gpuTest("tiny-llama2: 1 sequence, no adapter (bucket 1, the fused one-row ops): replayed equals eager exactly", async () => {
    const eager = await run(() => [null], false, 0);
    const replayed = await run(() => [null], true, 1);
    expect(replayed[0].outputs.length).toBe(16);
    expect(replayed[0].outputs.map((o) => [o.id, o.logprob])).toEqual(eager[0].outputs.map((o) => [o.id, o.logprob]));
  });

  gpuTest("tiny-llama2: 7 sequences over every adapter (bucket 8): 15 decode steps recorded once, replayed, equal to eager", async () => {
    const all = (names: string[]) => [null, ...names];
    const eager = await run(all, false, 0);
    const replayed = await run(all, true, 1); // bucket 8, with LoRA
    expect(replayed.length).toBe(7);
    let compared = 0;
    replayed.forEach((s, i) => {
      for (let t = 0; t < eager[i].outputs.length; t++) {
        const [a, b] = eager[i].outputs[t].topLogprobs;
        if (a.logprob - b.logprob < MARGIN) break;
        expect(s.outputs[t].id).toBe(eager[i].outputs[t].id);
        expect(Math.abs(s.outputs[t].logprob - eager[i].outputs[t].logprob)).toBeLessThan(0.05);
        compared++;
      }
    });
    console.log(`graphs vs eager: ${compared} tokens compared`);
    expect(compared).toBeGreaterThan(7); // at least the replayed steps of some sequences
  });
});
