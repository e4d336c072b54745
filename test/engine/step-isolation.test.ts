// A step that fails fails only the requests whose input or adapter caused it: the batch is split
// until the failing sequences run alone; everyone else gets every token, and the service keeps serving.
import { expect, test } from "bun:test";
import { loadStubModel } from "../../src/engine/load-model.ts";
import { EngineService, type GenerationHandle } from "../../src/engine/engine-service.ts";
import { Metrics } from "../../src/engine/metrics.ts";
import type { HostBatch } from "../../src/engine/batch-builder.ts";
import { adaptersDir, cpuDevice, greedyParams, modelDir } from "../helpers/fixtures.ts";

const POISON = 31000; // a token id the stub's forward pass refuses, standing in for an input that breaks a kernel

async function poisonedService() {
  const model = loadStubModel({ modelDir: modelDir("tiny-llama2"), adaptersDir: adaptersDir("tiny-llama2"), device: await cpuDevice(), maxSeqs: 16, maxLoras: 4 });
  const run = model.runner.run.bind(model.runner);
  let batches = 0;
  model.runner.run = (batch: HostBatch) => {
    batches++;
    if (batch.tokenIds.includes(POISON)) throw new Error("the kernel refused this batch");
    run(batch);
  };
  const load = model.runner.lora.load;
  model.runner.lora.load = (slot, adapter) => {
    if (adapter.name === "ru") throw new Error("the slot upload failed");
    load(slot, adapter);
  };
  const metrics = new Metrics();
  const svc = new EngineService(model, { name: "tiny-llama2", maxQueue: 64, metrics });
  svc.start();
  return { svc, metrics, batches: () => batches };
}

async function outcome(h: GenerationHandle): Promise<{ tokens: number; error?: string }> {
  let tokens = 0;
  try {
    for await (const _ of h.events) tokens++;
    return { tokens };
  } catch (e) {
    return { tokens, error: (e as Error).message };
  }
}

test("one poisoned prompt among eight fails alone; the other seven get all their tokens", async () => {
  const { svc, metrics } = await poisonedService();
  const prompts = Array.from({ length: 8 }, (_, i) => [1, 450 + i, i === 5 ? POISON : 100]);
  const handles = prompts.map((promptIds, i) => svc.submit({ promptIds, adapter: i % 2 ? "es" : null, params: greedyParams(6) }));
  const results = await Promise.all(handles.map(outcome));
  results.forEach((r, i) => expect(r).toEqual(i === 5 ? { tokens: 0, error: "the kernel refused this batch" } : { tokens: 6 }));
  expect((await metrics.requests.get({ model: "tiny-llama2", adapter: "es", finish_reason: "error" }))).toBe(1);
  // and the service goes on serving
  expect(await outcome(svc.submit({ promptIds: [1, 2, 3], adapter: null, params: greedyParams(3) }))).toEqual({ tokens: 3 });
  svc.stop();
});

test("an adapter whose slot upload fails fails its own requests; others in the same step run", async () => {
  const { svc } = await poisonedService();
  const handles = ["ru", "es", null, "fr"].map((adapter) => svc.submit({ promptIds: [1, 450, 100], adapter, params: greedyParams(4) }));
  const results = await Promise.all(handles.map(outcome));
  expect(results).toEqual([{ tokens: 0, error: "the slot upload failed" }, { tokens: 4 }, { tokens: 4 }, { tokens: 4 }]);
  // the failed load left no slot behind claiming to hold ru: the next ru request tries again (and fails the same way)
  expect((await outcome(svc.submit({ promptIds: [1, 2], adapter: "ru", params: greedyParams(2) }))).error).toBe("the slot upload failed");
  svc.stop();
});
