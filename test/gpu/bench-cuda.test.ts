// `bench --synthetic` end to end on the CUDA backend with a tiny shape and small ceilings (on the
// emulator the full ones take many minutes): every decode figure eager and replayed from graphs, with
// and without adapters, no graph failure, fp16 byte counts. Skipped, with the reason printed, without a GPU.
import { afterAll, expect, test } from "bun:test";
import { runSyntheticBench } from "../../src/bench/synthetic-bench.ts";
import { adapterBytes } from "../../src/bench/step-bytes.ts";
import { syntheticConfig } from "../../src/model/synthetic.ts";
import { openCuda } from "./harness.ts";

const cuda = await openCuda("test/gpu/bench-cuda.test.ts");
afterAll(() => cuda?.close());

(cuda ? test : test.skip)("bench --synthetic tiny on CUDA: each figure eager and from graphs, graphs recorded without failure", () => {
  const r = runSyntheticBench({ preset: "tiny", device: cuda!, batchSizes: [1, 4], contextLen: 48, steps: 2, adapters: 4, prefillLen: 32, ceilings: "small" });
  const config = syntheticConfig("tiny");
  expect(r.dtype).toBe("F16");
  const modes = ["none", "1 shared r16 qkvo", "distinct r16 qkvo", "distinct r64 all7"];
  expect(r.decode.map((d) => `${d.batch}/${d.adapters}/${d.graphs}`)).toEqual(
    modes.flatMap((m) => [1, 4].flatMap((b) => [`${b}/${m}/false`, `${b}/${m}/true`])));
  for (const d of r.decode) expect(Number.isFinite(d.stepMs) && d.stepMs > 0).toBe(true);
  const kvPerToken = 2 * config.numLayers * config.numKvHeads * config.headDim * 2;
  const r16 = r.decode.find((d) => d.batch === 4 && d.adapters === "distinct r16 qkvo")!;
  // the untied embedding table is read at the batch's 4 rows only
  const unread = (config.vocabSize - 4) * config.hiddenSize * 2;
  expect(r16.bytesPerStep).toBe(r.weightBytes - unread + 4 * 48 * kvPerToken + 4 * adapterBytes(config, 16, ["q_proj", "k_proj", "v_proj", "o_proj"], "F16"));
  expect(r.floorBytes).toBe(r.weightBytes - (config.vocabSize - 1) * config.hiddenSize * 2 + 48 * kvPerToken);
  expect(r.checks.find((c) => c.what === "4 distinct adapters change their rows' logits")?.pass).toBe(true);
  // a graph that failed to record (an op refused under capture) is reported as a failed check
  expect(r.checks.filter((c) => c.what === "decode graphs recorded")).toEqual([]);
  expect(r.prefill.tokens).toBe(32);
});
