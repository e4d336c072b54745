// The asynchronous service over the CPU twin: concurrency, adapter tiers, cancellation, errors.
import { describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdapterError } from "../../src/adapters/peft-config.ts";
import { UnknownAdapterError } from "../../src/adapters/adapter-store.ts";
import { EngineService, type GenerationHandle } from "../../src/engine/engine-service.ts";
import { AdapterBusyError, OverloadedError, PinLimitError } from "../../src/engine/service-errors.ts";
import type { LoadOptions } from "../../src/engine/load-model.ts";
import { Metrics } from "../../src/engine/metrics.ts";
import { adaptersDir, comparableSteps, greedyParams, loadFixtureModel, readReference, type ReferenceCase } from "../helpers/fixtures.ts";

async function service(opts: Partial<LoadOptions> = {}, maxQueue = 256): Promise<{ svc: EngineService; metrics: Metrics }> {
  const model = await loadFixtureModel("tiny-llama2", { maxSeqs: 64, ...opts });
  const metrics = new Metrics();
  const svc = new EngineService(model, { name: "tiny-llama2", maxQueue, metrics });
  svc.start();
  return { svc, metrics };
}

async function collect(h: GenerationHandle): Promise<{ ids: number[]; text: string; finish: string | null }> {
  const ids: number[] = [];
  let text = "", finish: string | null = null;
  for await (const e of h.events) {
    ids.push(e.token.id);
    text += e.text;
    finish = e.finishReason;
  }
  return { ids, text, finish };
}

// tiny-llama2's smallest reference margin is 1e-4 and the CPU twin's logit error 1e-5 (see
// test/engine/fixtures.test.ts): compare greedy tokens before the first step under 2e-4.
function expectGreedy(ids: number[], c: ReferenceCase): void {
  const n = comparableSteps(c.greedy_steps, 2e-4);
  expect(ids.slice(0, n)).toEqual(c.greedy_ids.slice(0, n));
}

describe("EngineService", () => {
  test("12 adapter names over 2 device slots and 3 host slots: every output correct, tiers move", async () => {
    const ref = await readReference("tiny-llama2");
    const { svc, metrics } = await service({ maxLoras: 2, maxCpuLoras: 3 });
    const originals = ["es", "fr", "ru", "rs", "rp", "dora"];
    for (const a of originals) await svc.loadAdapter(`${a}-copy`, join(adaptersDir("tiny-llama2"), a));
    const jobs = ref.cases.flatMap((c) => (c.adapter ? [c.adapter, `${c.adapter}-copy`] : [null]).map(async (adapter) => {
      const { ids } = await collect(svc.submit({ promptIds: c.prompt_ids, adapter, params: greedyParams(c.greedy_ids.length) }));
      expectGreedy(ids, c);
    }));
    await Promise.all(jobs);
    expect(jobs.length).toBe(52);
    const gpuLoads = (await metrics.adapterLoads.get({ model: "tiny-llama2", tier: "gpu" }));
    expect(gpuLoads).toBeGreaterThanOrEqual(12); // each of the 12 names went through a slot at least once
    expect((await metrics.adapterEvictions.get({ model: "tiny-llama2", tier: "gpu" }))).toBe(gpuLoads - 2);
    expect((await metrics.adapterEvictions.get({ model: "tiny-llama2", tier: "cpu" }))).toBeGreaterThanOrEqual(9);
    // per tier, each request either found its adapter resident (a hit) or had it loaded; the host
    // tier loads at most once per request (requests that arrive during a load share it)
    const cpu = { hits: (await metrics.adapterHits.get({ model: "tiny-llama2", tier: "cpu" })), loads: (await metrics.adapterLoads.get({ model: "tiny-llama2", tier: "cpu" })) };
    expect(cpu.hits + cpu.loads).toBeLessThanOrEqual(48);
    expect(cpu.loads).toBeGreaterThanOrEqual(12);
    expect((await metrics.adapterHits.get({ model: "tiny-llama2", tier: "gpu" })) + gpuLoads).toBe(48); // the 48 adapter requests
    const text = (await metrics.render());
    expect(text).toMatch(/lora_serve_adapters\{model="tiny-llama2",tier="gpu"\} 2/);
    expect(text).toMatch(/lora_serve_adapters\{model="tiny-llama2",tier="cpu"\} 3/);
    expect(text).toMatch(/lora_serve_adapters\{model="tiny-llama2",tier="disk"\} 12/);
    expect(svc.inFlight).toBe(0);
    svc.stop();
  });

  test("tier hits count requests: the first request for an adapter loads it, the next ones hit in both tiers", async () => {
    const { svc, metrics } = await service({ maxLoras: 2, maxCpuLoras: 3 });
    for (let i = 0; i < 5; i++) await collect(svc.submit({ promptIds: [1, 450, 7483], adapter: "es", params: greedyParams(2) }));
    const count = async (tier: string) => [(await metrics.adapterLoads.get({ model: "tiny-llama2", tier })), (await metrics.adapterHits.get({ model: "tiny-llama2", tier }))];
    expect(await count("cpu")).toEqual([1, 4]);
    expect(await count("gpu")).toEqual([1, 4]);
    svc.stop();
  });

  test("stop strings end generation and are not part of the text; min_tokens defers them", async () => {
    const ref = await readReference("tiny-llama2");
    const c = ref.cases.find((x) => x.adapter === null && x.prompt === "plain")!;
    const { svc } = await service();
    const full = await collect(svc.submit({ promptIds: c.prompt_ids, adapter: null, params: greedyParams(12) }));
    const stopAt = full.text.slice(5, 9); // a string that occurs in the greedy text
    const first = full.text.indexOf(stopAt);
    const cut = await collect(svc.submit({ promptIds: c.prompt_ids, adapter: null, params: greedyParams(12), stop: [stopAt, "never-there"] }));
    expect(cut.finish).toBe("stop");
    expect(cut.text).toBe(full.text.slice(0, first));
    const late = await collect(svc.submit({ promptIds: c.prompt_ids, adapter: null, params: { ...greedyParams(12), minTokens: 12 }, stop: [stopAt] }));
    expect(late.text).toBe(full.text);
    svc.stop();
  });

  test("a cancelled request frees its KV blocks and its adapter", async () => {
    const ref = await readReference("tiny-llama2");
    const c = ref.cases.find((x) => x.adapter === "es" && x.prompt === "long")!;
    const { svc, metrics } = await service();
    const controller = new AbortController();
    const h = svc.submit({ promptIds: c.prompt_ids, adapter: "es", params: greedyParams(300), signal: controller.signal });
    let seen = 0;
    await expect((async () => {
      for await (const _ of h.events) if (++seen === 3) controller.abort();
    })()).rejects.toThrow(/client went away/);
    expect(svc.inFlight).toBe(0);
    expect((await metrics.render())).toMatch(/lora_serve_kv_blocks\{model="tiny-llama2",state="used"\} 0/);
    await svc.unloadAdapter("es", { wait: false }); // nothing holds it any more
    svc.stop();
  });

  test("bad adapters and bad requests fail alone; the next request is served correctly", async () => {
    const ref = await readReference("tiny-llama2");
    const c = ref.cases.find((x) => x.adapter === "fr" && x.prompt === "plain")!;
    const { svc } = await service();
    const broken = mkdtempSync(join(tmpdir(), "lora-serve-broken-"));
    cpSync(join(adaptersDir("tiny-llama2"), "es"), broken, { recursive: true });
    truncateSync(join(broken, "adapter_model.safetensors"), 100);
    await expect(svc.loadAdapter("broken", broken)).rejects.toThrow(AdapterError);
    expect(svc.hasAdapter("broken")).toBe(false);
    // registered fine, corrupted before first use: the request fails, nothing else does
    const later = mkdtempSync(join(tmpdir(), "lora-serve-later-"));
    cpSync(join(adaptersDir("tiny-llama2"), "es"), later, { recursive: true });
    svc.model.adapters.register("later", later);
    truncateSync(join(later, "adapter_model.safetensors"), 100);
    await expect(collect(svc.submit({ promptIds: c.prompt_ids, adapter: "later", params: greedyParams(4) }))).rejects.toThrow(AdapterError);
    expect(() => svc.submit({ promptIds: c.prompt_ids, adapter: "nope", params: greedyParams(4) })).toThrow(UnknownAdapterError);
    expect(() => svc.submit({ promptIds: c.prompt_ids, adapter: null, params: greedyParams(100000) })).toThrow(/context length/);
    const { ids } = await collect(svc.submit({ promptIds: c.prompt_ids, adapter: "fr", params: greedyParams(c.greedy_ids.length) }));
    expectGreedy(ids, c);
    expect(svc.inFlight).toBe(0);
    svc.stop();
  });

  test("unload is refused while the adapter has requests in flight; a full queue says so", async () => {
    const ref = await readReference("tiny-llama2");
    const c = ref.cases.find((x) => x.adapter === "es" && x.prompt === "plain")!;
    const { svc } = await service({}, 1);
    const running = svc.submit({ promptIds: c.prompt_ids, adapter: "es", params: greedyParams(50) });
    await expect(svc.unloadAdapter("es", { wait: false })).rejects.toThrow(AdapterBusyError);
    const queued = () => svc.submit({ promptIds: c.prompt_ids, adapter: null, params: greedyParams(2) });
    expect(queued).toThrow(OverloadedError); // the first one still waits for the loop: the queue (1) is full
    await collect(running);
    await svc.unloadAdapter("es");
    expect(svc.hasAdapter("es")).toBe(false);
    svc.beginShutdown();
    expect(queued).toThrow(/shutting down/);
    await svc.drain(1000);
    svc.stop();
  });

  test("round-robin admission: a quiet adapter's request is not stuck behind a busy adapter's backlog", async () => {
    const ref = await readReference("tiny-llama2");
    const c = ref.cases.find((x) => x.adapter === null && x.prompt === "plain")!;
    const { svc } = await service({ maxSeqs: 2 }); // two sequences per step
    const finished: string[] = [];
    const busy = Array.from({ length: 8 }, (_, i) =>
      collect(svc.submit({ promptIds: c.prompt_ids, adapter: "es", params: greedyParams(8) })).then(() => finished.push(`es${i}`)));
    const quiet = collect(svc.submit({ promptIds: c.prompt_ids, adapter: "fr", params: greedyParams(8) })).then(() => finished.push("fr"));
    await Promise.all([...busy, quiet]);
    // FIFO would finish fr last (9th); round-robin runs it in the second batch, beside es2
    expect(finished.indexOf("fr")).toBeLessThanOrEqual(3);
    expect(finished.length).toBe(9);
    svc.stop();
  });
});

describe("pinning", () => {
  test("a pinned adapter keeps its device slot and host copy while others rotate", async () => {
    const ref = await readReference("tiny-llama2");
    const { svc, metrics } = await service({ maxLoras: 2, maxCpuLoras: 2 });
    await svc.loadAdapter("pinned-es", join(adaptersDir("tiny-llama2"), "es"), { pin: true });
    const plain = ref.cases.filter((x) => x.prompt === "plain");
    for (const c of plain.filter((x) => x.adapter !== null)) {
      for (const adapter of ["pinned-es", c.adapter!]) {
        const ids = (await collect(svc.submit({ promptIds: c.prompt_ids, adapter, params: greedyParams(4) }))).ids;
        expect(ids.length).toBe(4);
      }
    }
    // pinned-es came into a slot once and was never displaced; the other five shared one slot
    expect((await metrics.adapterLoads.get({ model: "tiny-llama2", tier: "gpu" }))).toBe(1 + 6);
    expect(svc.model.adapters.isLoaded("pinned-es")).toBe(true);
    svc.stop();
  });
});

describe("min_tokens", () => {
  test("a stop token cannot be sampled before min_tokens (masked as in vLLM); after it, it ends the sequence", async () => {
    const ref = await readReference("tiny-llama2");
    const c = ref.cases.find((x) => x.adapter === null && x.prompt === "plain")!;
    const [first, second, third] = c.greedy_steps[0].top_logits;
    // the reference ranks are unambiguous at the CPU twin's 1e-5 logit error
    expect(first - second).toBeGreaterThan(2e-4);
    expect(second - third).toBeGreaterThan(2e-4);
    const { svc } = await service();
    const stopOnGreedy = { ...greedyParams(3), ignoreEos: false, stopTokenIds: [c.greedy_ids[0]] };
    const stopped = await collect(svc.submit({ promptIds: c.prompt_ids, adapter: null, params: stopOnGreedy }));
    expect(stopped.ids).toEqual([c.greedy_ids[0]]);
    expect(stopped.finish).toBe("stop");
    const held = await collect(svc.submit({ promptIds: c.prompt_ids, adapter: null, params: { ...stopOnGreedy, minTokens: 1 } }));
    expect(held.ids[0]).toBe(c.greedy_steps[0].top_ids[1]); // the best token that is not the banned one
    expect(held.ids.length).toBe(3);
    svc.stop();
  });
});

describe("the pin cap", () => {
  test("pins stay below max_loras: with 3 slots a third pin is refused, unpinning makes room", async () => {
    const { svc } = await service({ maxLoras: 3 });
    await svc.pin("es");
    await svc.loadAdapter("fr-pinned", join(adaptersDir("tiny-llama2"), "fr"), { pin: true });
    await expect(svc.pin("ru")).rejects.toThrow(PinLimitError);
    await expect(svc.loadAdapter("rs-pinned", join(adaptersDir("tiny-llama2"), "rs"), { pin: true })).rejects.toThrow("at most 2 (max_loras - 1)");
    expect(svc.hasAdapter("rs-pinned")).toBe(false);
    await svc.pin("es"); // pinning a pinned adapter again is no new pin
    await svc.pin("es", false);
    await svc.pin("ru");
    expect(svc.model.adapters.isPinned("ru")).toBe(true);
    // an unpinned adapter still gets the third slot
    const ids = (await collect(svc.submit({ promptIds: [1, 450], adapter: "rp", params: greedyParams(2) }))).ids;
    expect(ids).toHaveLength(2);
    svc.stop();
  });
});
