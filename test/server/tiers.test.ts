// Adapter tiers through HTTP: with 2 device slots and 3 host slots, 12 adapters in rotation still
// give correct output, and /metrics shows the loads and evictions that happened.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { adaptersDir, comparableSteps, readReference } from "../helpers/fixtures.ts";
import { startFixtureServer } from "./server-fixture.ts";

test("--max-loras 2 --max-cpu-loras 3 with 12 adapters in rotation", async () => {
  const ref = await readReference("tiny-llama2");
  const s = await startFixtureServer({ load: { maxLoras: 2, maxCpuLoras: 3 } });
  try {
    const originals = ["es", "fr", "ru", "rs", "rp", "dora"];
    for (const a of originals) {
      const r = await s.post("/v1/load_lora_adapter", { lora_name: `${a}-2`, lora_path: join(adaptersDir("tiny-llama2"), a) });
      expect(r.status).toBe(200);
    }
    const cases = ref.cases.filter((c) => c.adapter !== null);
    // three rounds over all 12 names, each round sent at once
    for (let round = 0; round < 3; round++) {
      await Promise.all(cases.flatMap((c) => [c.adapter!, `${c.adapter}-2`].map(async (model) => {
        const r = await s.post("/v1/completions", {
          model, prompt: c.prompt_ids, max_tokens: c.greedy_ids.length, temperature: 0, ignore_eos: true, return_token_ids: true,
        });
        expect(r.status).toBe(200);
        const ids: number[] = ((await r.json()) as { choices: { token_ids: number[] }[] }).choices[0].token_ids;
        // the CPU twin's logit error (1e-5) is far below 2e-4; stop before smaller reference margins
        const n = comparableSteps(c.greedy_steps, 2e-4);
        expect(ids.slice(0, n)).toEqual(c.greedy_ids.slice(0, n));
      })));
    }
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const value = (name: string, tier: string) =>
      Number(new RegExp(`^${name}\\{model="tiny-llama2",tier="${tier}"\\} (\\d+)`, "m").exec(metrics)?.[1]);
    // each round loads every name, except those still resident from the round before (2 slots, 3 host)
    expect(value("lora_serve_adapter_loads_total", "gpu")).toBeGreaterThanOrEqual(12 + 2 * 10);
    expect(value("lora_serve_adapter_evictions_total", "gpu")).toBe(value("lora_serve_adapter_loads_total", "gpu") - 2);
    expect(value("lora_serve_adapter_loads_total", "cpu")).toBeGreaterThanOrEqual(12 + 2 * 9);
    expect(value("lora_serve_adapter_evictions_total", "cpu")).toBe(value("lora_serve_adapter_loads_total", "cpu") - 3);
    expect(value("lora_serve_adapters", "gpu")).toBe(2);
    expect(value("lora_serve_adapters", "cpu")).toBe(3);
    expect(value("lora_serve_adapters", "disk")).toBe(12);
  } finally {
    await s.close();
  }
});
