// Decode at batch 1 folds each norm into the projections around it (LlamaForward's foldNorms): a projection
// without LoRA adds into the residual stream itself (lc_linear_residual), and the next one without LoRA
// normalises the stream itself (lc_rmsnorm_linear_*). On the twin those ops are lc_linear + lc_add and
// lc_rmsnorm + the projection, the same float math as lc_add_rmsnorm, so the folded and unfolded engines
// must agree exactly: base model (everything folded), `es` (LoRA on q, v: o -> gate|up folded, down -> q|k|v
// half), `rp` (LoRA on q, v, o, down: nothing to fold).
import { describe, expect, test } from "bun:test";
import type { Device } from "../../src/native/device.ts";
import { cpuDevice, greedyParams, loadFixtureModel, readReference } from "../helpers/fixtures.ts";

const NAME = "tiny-llama2";

async function greedyRuns(fold: boolean, device: Device): Promise<{ outputs: unknown[]; folded: number }> {
  const saved = process.env.LORA_SERVE_FOLD_NORMS;
  process.env.LORA_SERVE_FOLD_NORMS = fold ? "1" : "0";
  const linearResidual = device.linearResidual;
  let folded = 0;
  device.linearResidual = function (a) {
    folded++;
    linearResidual.call(this, a);
  };
  try {
    const model = await loadFixtureModel(NAME, { maxLogitRows: 64, maxTokens: 256 });
    const { cases } = await readReference(NAME);
    const outputs: unknown[] = [];
    for (const adapter of [null, "es", "rp"]) {
      const c = cases.find((x) => x.adapter === adapter && x.prompt === "plain")!;
      const seq = model.engine.add({ promptIds: c.prompt_ids, adapter: c.adapter, params: greedyParams(8, 5) });
      model.engine.runToCompletion();
      outputs.push({ adapter, outputs: seq.outputs });
    }
    return { outputs, folded };
  } finally {
    device.linearResidual = linearResidual;
    if (saved === undefined) delete process.env.LORA_SERVE_FOLD_NORMS;
    else process.env.LORA_SERVE_FOLD_NORMS = saved;
  }
}

describe("norms folded into the projections at batch 1", () => {
  test(`${NAME}: greedy tokens and log-probabilities equal the unfolded engine's exactly (base, es, rp)`, async () => {
    const device = await cpuDevice();
    const folded = await greedyRuns(true, device), apart = await greedyRuns(false, device);
    expect(folded.folded).toBeGreaterThan(0);
    expect(apart.folded).toBe(0);
    expect(folded.outputs).toEqual(apart.outputs);
  });
});
