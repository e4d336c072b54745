// bench --synthetic's code on the CPU twin with a tiny shape: the figures are measurements, so
// this checks what the report must contain and how its numbers relate, not how fast they are.
import { expect, test } from "bun:test";
import { runSyntheticBench } from "../../src/bench/synthetic-bench.ts";
import { distinctAdaptersCheck } from "../../src/bench/distinct-adapters.ts";
import { adapterBytes, decodeStepBytes } from "../../src/bench/step-bytes.ts";
import { BlockManager } from "../../src/engine/block-manager.ts";
import { ModelRunner } from "../../src/engine/model-runner.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import { randomWeights, syntheticConfig } from "../../src/model/synthetic.ts";
import { cpuDevice } from "../helpers/fixtures.ts";

const ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;

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
  // the bytes a step reads, counted by hand: the untied embedding table is read only at 4 rows
  const h = config.hiddenSize, kvPerToken = 2 * config.numLayers * config.numKvHeads * config.headDim * 4;
  const distinct4 = r.decode.find((d) => d.batch === 4 && d.adapters === "distinct r64 all7")!;
  expect(config.tieWordEmbeddings).toBe(false);
  expect(distinct4.bytesPerStep).toBe(r.weightBytes - config.vocabSize * h * 4 + 4 * h * 4 + 4 * 48 * kvPerToken + 4 * adapterBytes(config, 64, ALL7, "F32"));
  expect(r.floorBytes).toBe(r.weightBytes - config.vocabSize * h * 4 + h * 4 + 48 * kvPerToken);
  expect(r.decode.find((d) => d.batch === 1 && d.adapters === "none")!.bytesPerStep).toBe(r.floorBytes);
  for (const d of r.decode) expect(d.tokensPerSecond).toBeCloseTo(d.batch / (d.stepMs / 1000), 3);
  expect(r.prefill.tokens).toBe(64);
  // the adapter figure: cold (disk -> host, first slot load) beside the warm median
  expect(r.adapterLoad.bytes).toBe(adapterBytes(config, 16, ["q_proj", "k_proj", "v_proj", "o_proj"], "F32"));
  expect(r.adapterLoad.diskToHostMs).toBeGreaterThan(0);
  expect(r.adapterLoad.firstMs).toBeGreaterThan(0);
  expect(r.checks.map((c) => c.what)).toContain("rank-16 q,k,v,o adapter host -> slot");
  expect(r.checks.find((c) => c.what === "4 distinct adapters change their rows' logits")?.pass).toBe(true);
});

test("a tied embedding table counts once, whole, as the LM head", () => {
  const config = { ...syntheticConfig("tiny"), tieWordEmbeddings: true };
  const kvPerToken = 2 * config.numLayers * config.numKvHeads * config.headDim * 2;
  expect(decodeStepBytes(config, "F16", { weightBytes: 1e6, batch: 2, contextLen: 10, adapterBytes: 7 })).toBe(1e6 + 2 * config.hiddenSize * 2 + 20 * kvPerToken + 7);
});

test("the distinct-adapters check fails where the slots hold the same adapter", async () => {
  const device = await cpuDevice();
  const config = syntheticConfig("tiny");
  const blockSize = 16, maxBlocksPerSeq = 4, n = 4;
  const runner = new ModelRunner(device, config, randomWeights(device, config, "F32"), {
    act: "F32", numBlocks: 16, blockSize, maxLoras: n,
    caps: { maxTokens: 64, maxSeqs: n, maxLogitRows: n, maxBlocksPerSeq, maxLoraRank: 16, maxTopLogprobs: 0, maxContextLen: 64 },
  });
  const blocks = new BlockManager(16, blockSize);
  const params = { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 1, topLogprobs: 0, ignoreEos: true, stopTokenIds: [] };
  const items = Array.from({ length: n }, (_, s) => {
    const seq = new Sequence(s, Array.from({ length: 20 }, (_, i) => (i * 7 + s) % config.vocabSize), null, params);
    seq.numComputed = 19;
    blocks.ensure(seq, 20);
    return { seq, numTokens: 1, slot: s, sample: true };
  });
  const kvElems = 17 * blockSize * config.numKvHeads * config.headDim;
  for (let l = 0; l < config.numLayers; l++) {
    device.fillRandom({ dtype: "F32", ptr: runner.kv.k[l], n: kvElems, seed: 50 + l, scale: 1 });
    device.fillRandom({ dtype: "F32", ptr: runner.kv.v[l], n: kvElems, seed: 60 + l, scale: 1 });
  }
  const load = (seed: (s: number) => number) => {
    for (let s = 0; s < n; s++) runner.lora.loadRandom(s, { rank: 16, modules: ["q_proj", "v_proj"], seed: seed(s) });
  };
  load((s) => 100 + s);
  expect(distinctAdaptersCheck(runner, items, blockSize, maxBlocksPerSeq, n).pass).toBe(true);
  load(() => 100);
  const same = distinctAdaptersCheck(runner, items, blockSize, maxBlocksPerSeq, n);
  expect(same.pass).toBe(false);
  expect(same.measured).toBe("smallest change 0.00 x that bound");
  runner.free();
});
