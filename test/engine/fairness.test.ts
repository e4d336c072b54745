// Fairness in the running batch: 100 requests x 200 tokens for one adapter fill every running slot,
// then one request for another adapter arrives. Under the fair policy it starts at the next step
// (time to first token within 3x its time alone plus a few steps) while the flood loses little
// throughput; under FCFS it waits for flood sequences to finish. The figures are printed; the
// bounds are generous, for a shared 2-core machine.
import { expect, test } from "bun:test";
import { EngineService } from "../../src/engine/engine-service.ts";
import type { SchedulingPolicy } from "../../src/engine/fair-share.ts";
import { Metrics } from "../../src/engine/metrics.ts";
import { greedyParams, loadFixtureModel } from "../helpers/fixtures.ts";

const FLOOD = 100, FLOOD_TOKENS = 200, BATCH = 32;

async function service(policy: SchedulingPolicy): Promise<EngineService> {
  const model = await loadFixtureModel("tiny-llama2", { maxSeqs: BATCH, schedulingPolicy: policy });
  const svc = new EngineService(model, { name: "tiny-llama2", maxQueue: 1024, metrics: new Metrics() });
  svc.start();
  return svc;
}

/** Milliseconds to the first token of a short request for `fr`. */
async function quietTtft(svc: EngineService): Promise<number> {
  const t0 = performance.now();
  const h = svc.submit({ promptIds: [1, 450, 7483, 338], adapter: "fr", params: greedyParams(4) });
  const it = h.events[Symbol.asyncIterator]();
  await it.next();
  const ttft = performance.now() - t0;
  while (!(await it.next()).done) { /* drain */ }
  return ttft;
}

async function flood(svc: EngineService, withQuiet: boolean): Promise<{ seconds: number; steps: number; quietMs: number }> {
  const t0 = performance.now();
  const done = Array.from({ length: FLOOD }, (_, i) => (async () => {
    for await (const _ of svc.submit({ promptIds: [1, 450, 7483, 338 + i], adapter: "es", params: greedyParams(FLOOD_TOKENS) }).events) { /* tokens */ }
  })());
  let quietMs = NaN;
  if (withQuiet) {
    await Bun.sleep(200); // the batch is full of flood sequences by now
    expect(svc.model.engine.numRunning).toBe(BATCH);
    quietMs = await quietTtft(svc);
  }
  await Promise.all(done);
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, steps: Math.ceil(FLOOD / BATCH) * FLOOD_TOKENS, quietMs };
}

test("a quiet adapter's first token under a flood: next step under fair, after the flood's sequences under FCFS", async () => {
  const fair = await service("fair");
  const alone = Math.min(await quietTtft(fair), await quietTtft(fair));
  const floodAlone = await flood(fair, false);
  const withQuiet = await flood(fair, true);
  const stepMs = (floodAlone.seconds * 1000) / floodAlone.steps;
  fair.stop();
  const fcfs = await service("fcfs");
  const fcfsRun = await flood(fcfs, true);
  fcfs.stop();
  const drop = 1 - floodAlone.seconds / withQuiet.seconds;
  console.log(`quiet TTFT alone ${alone.toFixed(1)} ms; under the flood: fair ${withQuiet.quietMs.toFixed(1)} ms, FCFS ${fcfsRun.quietMs.toFixed(1)} ms ` +
    `(a flood step ${stepMs.toFixed(1)} ms); flood ${floodAlone.seconds.toFixed(2)} s alone, ${withQuiet.seconds.toFixed(2)} s with the quiet request (fair): ${(drop * 100).toFixed(1)}% slower`);
  expect(withQuiet.quietMs).toBeLessThan(3 * alone + 4 * stepMs);
  expect(fcfsRun.quietMs).toBeGreaterThan(10 * withQuiet.quietMs); // the control: without the policy it waits
  expect(drop).toBeLessThan(0.25);
}, 300_000);
