// Every adapter in --adapters is checked at start: a broken one is logged with its name and why,
// is not listed or served, and the others serve.
import { afterAll, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLoraServe } from "../../src/bench/serve/target.ts";
import { adaptersDir } from "../helpers/fixtures.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-start-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test("a truncated and a misconfigured adapter are reported and left out; es and fr serve", async () => {
  for (const name of ["es", "fr", "ru"]) cpSync(join(adaptersDir("tiny-llama2"), name), join(tmp, name), { recursive: true });
  cpSync(join(adaptersDir("tiny-llama2"), "es"), join(tmp, "truncated"), { recursive: true });
  const file = join(tmp, "truncated", "adapter_model.safetensors");
  truncateSync(file, Math.floor(statSync(file).size / 2));
  cpSync(join(adaptersDir("tiny-llama2"), "es"), join(tmp, "badconfig"), { recursive: true });
  writeFileSync(join(tmp, "badconfig", "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 8, lora_alpha: 16, target_modules: ["nonexistent_proj"] }));
  const lines: string[] = [];
  const target = await startLoraServe(["--adapters", tmp, "--max-lora-rank", "32"], { log: (l) => lines.push(l) });
  try {
    const log = lines.join("\n");
    expect(log).toMatch(/adapter "truncated": .*; it is not served/);
    expect(log).toMatch(/adapter "badconfig": .*; it is not served/);
    expect(log).toMatch(/adapter "ru": .*max_lora_rank 32; it is not served/);
    expect(target.models.filter((m) => m.parent !== null).map((m) => m.id)).toEqual(["es", "fr"]);
    for (const [model, status] of [["es", 200], ["fr", 200], ["truncated", 404], ["ru", 404]] as const) {
      const r = await fetch(`${target.url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model, prompt: "Hi", max_tokens: 2 }) });
      expect([model, r.status]).toEqual([model, status]);
    }
  } finally {
    await target.stop();
  }
}, 60_000);

test("--preload-adapters all reads them into host memory at start; --pin-adapters is capped below --max-loras", async () => {
  const target = await startLoraServe(["--preload-adapters", "all", "--pin-adapters", "es", "--max-loras", "2"]);
  try {
    const metrics = await (await fetch(`${target.url}/metrics`)).text();
    expect(metrics).toContain('lora_serve_adapters{model="tiny-llama2",tier="cpu"} 2'); // the demo's es and fr, before any request
    expect(metrics).toMatch(/lora_serve_adapter_loads_total\{model="tiny-llama2",tier="cpu"\} 2/);
  } finally {
    await target.stop();
  }
  await expect(startLoraServe(["--pin-adapters", "es,fr", "--max-loras", "2"])).rejects.toThrow("at most 1 (max_loras - 1)");
  await expect(startLoraServe(["--preload-adapters", "es,nope"])).rejects.toThrow("name adapters no model serves: nope");
}, 60_000);
