// Adapters loaded and unloaded at runtime over HTTP (vLLM's routes), refused while busy, and
// corrupt adapters answered with a clear error while the server keeps serving.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync, statSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adaptersDir, comparableSteps, readReference, type ReferenceCase } from "../helpers/fixtures.ts";
import { MODEL, settled, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-adapters-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function copyAdapter(name: string, as: string, dir = tmp): string {
  const dest = join(dir, as);
  cpSync(join(adaptersDir(MODEL), name), dest, { recursive: true });
  return dest;
}

function corrupt(dir: string): void {
  const file = join(dir, "adapter_model.safetensors");
  truncateSync(file, Math.floor(statSync(file).size / 2));
}

describe("runtime adapters", () => {
  let s: FixtureServer;
  let es: ReferenceCase;
  beforeAll(async () => {
    s = await startFixtureServer();
    es = (await readReference(MODEL)).cases.find((c) => c.adapter === "es" && c.prompt === "plain")!;
  });
  afterAll(() => s.close());

  const greedy = async (model: string) => {
    const r = await s.post("/v1/completions", { model, prompt: es.prompt_ids, max_tokens: es.greedy_ids.length, temperature: 0, ignore_eos: true, return_token_ids: true });
    return { status: r.status, body: await r.json() as any };
  };
  const expectEsGreedy = async (model: string) => {
    const { status, body } = await greedy(model);
    expect(status).toBe(200);
    const n = comparableSteps(es.greedy_steps, 2e-4);
    expect(body.choices[0].token_ids.slice(0, n)).toEqual(es.greedy_ids.slice(0, n));
  };

  test("load a copy under a new name, use it, unload it", async () => {
    const load = await s.post("/v1/load_lora_adapter", { lora_name: "es2", lora_path: copyAdapter("es", "es2") });
    expect(load.status).toBe(200);
    expect(await load.text()).toBe("Success: LoRA adapter 'es2' added successfully.");
    const models = await (await fetch(`${s.url}/v1/models`)).json() as any;
    expect(models.data.find((m: any) => m.id === "es2")).toMatchObject({ parent: MODEL });
    await expectEsGreedy("es2");

    const again = await s.post("/v1/load_lora_adapter", { lora_name: "es2", lora_path: join(tmp, "es2") });
    expect(again.status).toBe(400);
    expect((await again.json() as any).error.param).toBe("lora_name");
    const inplace = await s.post("/v1/load_lora_adapter", { lora_name: "es2", lora_path: join(tmp, "es2"), load_inplace: true });
    expect(inplace.status).toBe(200);
    // a broken replacement is refused and the weights already there keep serving
    const broken = copyAdapter("es", "es2-broken");
    corrupt(broken);
    const bad = await s.post("/v1/load_lora_adapter", { lora_name: "es2", lora_path: broken, load_inplace: true });
    expect(bad.status).toBe(400);
    await expectEsGreedy("es2");

    const unload = await s.post("/v1/unload_lora_adapter", { lora_name: "es2" });
    expect(unload.status).toBe(200);
    expect(await unload.text()).toBe("Success: LoRA adapter 'es2' removed successfully.");
    const gone = await greedy("es2");
    expect(gone.status).toBe(404);
    expect(gone.body.error).toMatchObject({ type: "NotFoundError", param: "model" });
    const twice = await s.post("/v1/unload_lora_adapter", { lora_name: "es2" });
    expect(twice.status).toBe(404);
  }, 60_000);

  test("unload with wait: false is refused (409) while a streaming request uses the adapter", async () => {
    expect((await s.post("/v1/load_lora_adapter", { lora_name: "es3", lora_path: copyAdapter("es", "es3") })).status).toBe(200);
    const long = await s.post("/v1/completions", { model: "es3", prompt: es.prompt_ids, max_tokens: 400, temperature: 0, ignore_eos: true, stream: true });
    expect(long.status).toBe(200);
    const reader = long.body!.getReader();
    await reader.read(); // the first chunk: the request is running
    const busy = await s.post("/v1/unload_lora_adapter", { lora_name: "es3", wait: false });
    expect(busy.status).toBe(409);
    expect((await busy.json() as any).error.message).toContain("es3");
    while (!(await reader.read()).done) { /* drain the stream */ }
    expect(await settled(s.service)).toBe(0);
    expect((await s.post("/v1/unload_lora_adapter", { lora_name: "es3", wait: false })).status).toBe(200);
  }, 60_000);

  test("unload drains by default: new requests are refused, the one in flight gets all its tokens, then it goes", async () => {
    expect((await s.post("/v1/load_lora_adapter", { lora_name: "es4", lora_path: copyAdapter("es", "es4") })).status).toBe(200);
    const long = await s.post("/v1/completions", { model: "es4", prompt: es.prompt_ids, max_tokens: 480, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
    const reader = long.body!.getReader();
    await reader.read();
    const unloading = s.post("/v1/unload_lora_adapter", { lora_name: "es4", timeout: 30 });
    await Bun.sleep(5);
    const refused = await greedy("es4");
    expect(refused.status).toBe(404);
    expect(refused.body.error.message).toContain("being unloaded");
    let text = new TextDecoder().decode((await reader.read()).value);
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += new TextDecoder().decode(chunk.value);
    expect(text.includes('"completion_tokens":480')).toBe(true); // nothing accepted is lost
    expect((await unloading).status).toBe(200);
    expect((await greedy("es4")).status).toBe(404);
  }, 60_000);

  test("a corrupt adapter is refused with 400 and nothing else changes", async () => {
    const dir = copyAdapter("es", "broken");
    corrupt(dir);
    const r = await s.post("/v1/load_lora_adapter", { lora_name: "broken", lora_path: dir });
    expect(r.status).toBe(400);
    const err = (await r.json() as any).error;
    expect(err.param).toBe("lora_path");
    expect(err.message).toContain("broken");
    const missing = await s.post("/v1/load_lora_adapter", { lora_name: "nowhere", lora_path: join(tmp, "does-not-exist") });
    expect(missing.status).toBe(400);
    const models = await (await fetch(`${s.url}/v1/models`)).json() as any;
    expect(models.data.map((m: any) => m.id)).not.toContain("broken");
    expect((await greedy("broken")).status).toBe(404);
    await expectEsGreedy("es");
  }, 60_000);

  test("a registered adapter whose files got corrupted: a clear 400 per request, the server keeps answering", async () => {
    const dir = join(tmp, "startup");
    cpSync(adaptersDir(MODEL), dir, { recursive: true });
    const t = await startFixtureServer({ load: { adaptersDir: dir } });
    try {
      corrupt(join(dir, "fr")); // registered at startup, not loaded yet
      for (let i = 0; i < 2; i++) {
        const r = await t.post("/v1/completions", { model: "fr", prompt: "Hello", max_tokens: 3 });
        expect(r.status).toBe(400);
        const err = (await r.json() as any).error;
        expect(err.message).toContain('"fr"');
        expect(err.message).not.toContain(dir); // the server's own path stays on the server
        const lmi = await t.post("/invocations", { inputs: "Hello", adapters: "fr" });
        expect(lmi.status).toBe(400);
        expect((await lmi.json() as any).error).toContain('"fr"');
      }
      const ok = await t.post("/v1/completions", { model: "es", prompt: es.prompt_ids, max_tokens: 4, temperature: 0, ignore_eos: true, return_token_ids: true });
      expect(ok.status).toBe(200);
      expect((await ok.json() as any).choices[0].token_ids).toEqual(es.greedy_ids.slice(0, 4));
      expect(await settled(t.service)).toBe(0);
    } finally {
      await t.close();
    }
  }, 60_000);
});
