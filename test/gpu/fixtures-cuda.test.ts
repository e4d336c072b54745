// The fixture models end to end on CUDA (libloracuda.so), against the HF references and the CPU
// twin. Skipped, with the reason printed, where no GPU is present.
import { describe, expect, test } from "bun:test";
import { Device } from "../../src/native/device.ts";
import { openCuda } from "./harness.ts";
import { loadModel, type LoadedModel } from "../../src/engine/load-model.ts";
import type { ModelRunner } from "../../src/engine/model-runner.ts";
import { MODEL_NAMES, adaptersDir, comparableSteps, greedyParams, modelDir, readReference, type FixtureModel } from "../helpers/fixtures.ts";
import type { Sequence } from "../../src/engine/sequence.ts";

const cuda = await openCuda("test/gpu/fixtures-cuda.test.ts");
const gpuTest = cuda ? test : test.skip;

// Activations, KV cache and LoRA run in the checkpoint's half type on the GPU. The CPU twin run
// with the same half-precision roundings misses the float64 reference by at most 0.021 (fp16) and
// 0.23 (bf16: 8 mantissa bits on logits of magnitude ~15) over every fixture case; the GPU sums in
// another order, so the bound is about twice that.
const TOL = { F16: 0.05, BF16: 0.5 } as const;

async function load(name: FixtureModel, device: Device, act?: "F16" | "BF16"): Promise<LoadedModel<ModelRunner>> {
  return loadModel({ modelDir: modelDir(name), adaptersDir: adaptersDir(name), device, maxLogitRows: 512, maxTokens: 512, act });
}

for (const name of MODEL_NAMES) {
  describe(`${name} on CUDA`, () => {
    gpuTest("top-16 logits at every position and greedy tokens match HF for every case", async () => {
      const ref = await readReference(name);
      const model = await load(name, cuda!);
      const tol = TOL[model.runner.act as "F16" | "BF16"];
      const vocab = model.config.vocabSize;
      let worst = 0;
      for (const c of ref.cases) {
        const [logits] = model.engine.promptLogits([{ promptIds: c.prompt_ids, adapter: c.adapter }]);
        for (let p = 0; p < c.prompt_ids.length; p++) {
          c.topk_ids[p].forEach((id, i) => (worst = Math.max(worst, Math.abs(logits[p * vocab + id] - c.topk_logits[p][i]))));
        }
        const seq = model.engine.add({ promptIds: c.prompt_ids, adapter: c.adapter, params: greedyParams(c.greedy_ids.length) });
        model.engine.runToCompletion();
        const n = comparableSteps(c.greedy_steps, 2 * tol);
        expect(seq.outputs.slice(0, n).map((t) => t.id)).toEqual(c.greedy_ids.slice(0, n));
      }
      console.log(`${name} (${model.runner.act}): worst top-16 logit error ${worst.toExponential(2)} (bound ${tol})`);
      expect(worst).toBeLessThan(tol);
      model.runner.free();
    });

    gpuTest("one batch of every adapter plus the base equals single runs", async () => {
      const ref = await readReference(name);
      const model = await load(name, cuda!);
      const adapters = [null, ...model.adapters.names()];
      const prompts = [...new Set(ref.cases.map((c) => c.prompt))];
      const reqs = adapters.map((adapter, i) => {
        const c = ref.cases.find((x) => x.adapter === adapter && x.prompt === prompts[i % prompts.length])!;
        return { promptIds: c.prompt_ids, adapter };
      });
      const batched = reqs.map((r) => model.engine.add({ ...r, params: greedyParams(8, 2) }));
      model.engine.runToCompletion();
      reqs.forEach((r, i) => {
        const alone = model.engine.add({ ...r, params: greedyParams(8, 2) });
        model.engine.runToCompletion();
        // GEMMs over a different number of rows may pick other cuBLAS kernels, so tokens must agree
        // where the top-2 margin exceeds the half-precision error
        comparable(batched[i], alone, TOL[model.runner.act as "F16" | "BF16"]);
      });
      model.runner.free();
    });

    gpuTest("a batch mixing prefill and decode over different adapters gives the CPU twin's tokens", async () => {
      const ref = await readReference(name);
      const run = async (device: Device, act?: "F16" | "BF16") => {
        const model = await load(name, device, act);
        const adapters = [null, ...model.adapters.names()];
        const seqs: Sequence[] = [];
        // the first half starts alone; the rest join while it decodes
        adapters.forEach((adapter, i) => {
          const c = ref.cases.filter((x) => x.adapter === adapter)[i % 4];
          if (i === Math.ceil(adapters.length / 2)) model.engine.step();
          seqs.push(model.engine.add({ promptIds: c.prompt_ids, adapter, params: greedyParams(6, 2) }));
        });
        model.engine.runToCompletion();
        model.runner.free();
        return { seqs, act: model.runner.act as "F16" | "BF16" };
      };
      const gpu = await run(cuda!);
      const cpu = await run(await Device.open("cpu"), gpu.act);
      gpu.seqs.forEach((s, i) => comparable(s, cpu.seqs[i], TOL[gpu.act]));
    });
  });
}

/** Equal tokens before the first step where `reference`'s top-2 logprob margin is under 2 * `tol`. */
function comparable(actual: Sequence, reference: Sequence, tol: number): void {
  for (let i = 0; i < reference.outputs.length; i++) {
    const [a, b] = reference.outputs[i].topLogprobs;
    if (a.logprob - b.logprob < 2 * tol) return;
    expect(actual.outputs[i].id).toBe(reference.outputs[i].id);
  }
}
