// The CPU twin against HF transformers + PEFT (float64) on every case of every fixture model.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { openSafetensors } from "../../src/model/safetensors.ts";
import { tensorToFloat32 } from "../../src/model/tensor.ts";
import { MODEL_NAMES, comparableSteps, greedyParams, loadFixtureModel, modelDir, readReference } from "../helpers/fixtures.ts";

// fp32 activations over exactly-upcast fp16/bf16 weights vs a float64 reference: each op adds
// ~1e-7 relative error (fp32 rounding), and logits of magnitude ~10-20 come out of a few layers of
// short fp32 dot products. Measured worst case over all fixtures: 1.1e-5. 1e-4 keeps a 10x
// margin and still catches any real bug (a wrong scale, rope or mask moves logits by 1e-2 or more).
const LOGIT_TOL = 1e-4;

for (const name of MODEL_NAMES) {
  describe(name, async () => {
    const ref = await readReference(name);
    const model = await loadFixtureModel(name, { maxLogitRows: 512, maxTokens: 512 });
    const vocab = model.config.vocabSize;

    for (const c of ref.cases) {
      const label = `${c.adapter ?? "base"} / ${c.prompt}`;

      test(`${label}: top-16 logits and logsumexp at every position`, () => {
        const [logits] = model.engine.promptLogits([{ promptIds: c.prompt_ids, adapter: c.adapter }]);
        expect(logits.length).toBe(c.prompt_ids.length * vocab);
        let worst = 0;
        for (let p = 0; p < c.prompt_ids.length; p++) {
          const row = logits.subarray(p * vocab, (p + 1) * vocab);
          c.topk_ids[p].forEach((id, i) => (worst = Math.max(worst, Math.abs(row[id] - c.topk_logits[p][i]))));
          // no token outside the reference's top-16 may beat its top-1
          let max = -Infinity;
          for (const v of row) max = Math.max(max, v);
          expect(max).toBeLessThanOrEqual(c.topk_logits[p][0] + LOGIT_TOL);
          let sum = 0;
          for (const v of row) sum += Math.exp(v - max);
          worst = Math.max(worst, Math.abs(max + Math.log(sum) - c.logsumexp[p]));
        }
        expect(worst).toBeLessThan(LOGIT_TOL);
      });

      test(`${label}: greedy continuation and its log-probabilities`, () => {
        const seq = model.engine.add({ promptIds: c.prompt_ids, adapter: c.adapter, params: greedyParams(c.greedy_ids.length, 5) });
        model.engine.runToCompletion();
        // compare the steps before the first one where two correct engines may legitimately disagree
        const n = comparableSteps(c.greedy_steps, 2 * LOGIT_TOL);
        expect(n).toBeGreaterThan(0);
        expect(seq.outputs.slice(0, n).map((t) => t.id)).toEqual(c.greedy_ids.slice(0, n));
        for (let i = 0; i < n; i++) {
          const step = c.greedy_steps[i], out = seq.outputs[i];
          expect(Math.abs(out.logprob - (step.top_logits[0] - step.logsumexp))).toBeLessThan(LOGIT_TOL);
          expect(out.topLogprobs.map((t) => t.id)).toEqual(step.top_ids);
          out.topLogprobs.forEach((t, j) => expect(Math.abs(t.logprob - (step.top_logits[j] - step.logsumexp))).toBeLessThan(LOGIT_TOL));
        }
      });
    }

    test("full last-position logits of the long prompt", () => {
      const file = openSafetensors(join(modelDir(name), "reference_last_logits.safetensors"));
      expect(file.tensors.size).toBeGreaterThan(0);
      for (const [key, tensor] of file.tensors) {
        const [who, prompt] = key.split(".");
        const c = ref.cases.find((x) => (x.adapter ?? "base") === who && x.prompt === prompt)!;
        expect(c).toBeDefined();
        const [logits] = model.engine.promptLogits([{ promptIds: c.prompt_ids, adapter: c.adapter }]);
        const last = logits.subarray(logits.length - vocab);
        const expected = tensorToFloat32(tensor);
        let worst = 0;
        for (let i = 0; i < vocab; i++) worst = Math.max(worst, Math.abs(last[i] - expected[i]));
        expect(worst).toBeLessThan(LOGIT_TOL);
      }
    });
  });
}
