// bench --synthetic's code on the CPU twin with a tiny shape: the figures are measurements, so
// this checks what the report must contain and how its numbers relate, not how fast they are.
import { expect, test } from "bun:test";
import { adapterBytes, runSyntheticBench } from "../../src/bench/synthetic-bench.ts";
import { syntheticConfig } from "../../src/model/synthetic.ts";
import { cpuDevice } from "../helpers/fixtures.ts";

test("synthetic benchmark, tiny preset on the CPU twin", async () => {
  const r = runSyntheticBench({ preset: "tiny", device: await cpuDevice(), batchSizes: [1, 4], contextLen: 48, steps: 2, adapters: 4, prefillLen: 64 });
  const config = syntheticConfig("tiny");
  expect(r.dtype).toBe("F32");
  expect(r.ceilings.copyGBps).toBeGreaterThan(0);
  expect(r.ceilings.gemmTflops).toBeGreaterThan(0);
  // 4 adapter modes x 2 batch sizes, eager only on the CPU
  expect(r.decode.map((d) => `${d.batch}/${d.adapters}`)).toEqual([
    "1/none", "4/none", "1/1 shared r16 qkvo", "4/1 shared r16 qkvo", "1/distinct r16 qkvo", "4/distinct r16 qkvo", "1/distinct r64 all7", "4/distinct r64 all7",
  ]);
  const kvPerToken = 2 * config.numLayers * config.numKvHeads * config.headDim * 4;
  const distinct4 = r.decode.find((d) => d.batch === 4 && d.adapters === "distinct r64 all7")!;
  expect(distinct4.bytesPerStep).toBe(r.weightBytes + 4 * 48 * kvPerToken + 4 * adapterBytes(config, 64, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "F32"));
  for (const d of r.decode) expect(d.tokensPerSecond).toBeCloseTo(d.batch / (d.stepMs / 1000), 3);
  expect(r.prefill.tokens).toBe(64);
  expect(r.adapterLoad.bytes).toBe(adapterBytes(config, 16, ["q_proj", "k_proj", "v_proj", "o_proj"], "F32"));
  expect(r.checks.map((c) => c.what)).toContain("rank-16 q,k,v,o adapter host -> slot");
});
