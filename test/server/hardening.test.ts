// Each reproduction from the hardening issue, through a running server, while a greedy stream for
// another adapter is in flight: the offending request or adapter gets a 4xx naming the field, the
// process keeps answering /ping, and the bystander's tokens equal its solo run.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adaptersDir } from "../helpers/fixtures.ts";
import { MODEL, settled, sseEvents, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-hardening-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const BYSTANDER = { model: "fr", prompt: "The weather today", max_tokens: 64, temperature: 0, ignore_eos: true, return_token_ids: true };

/** The bystander's tokens from a streamed run. */
async function streamedIds(r: Response): Promise<number[]> {
  expect(r.status).toBe(200);
  return sseEvents(await r.text()).flatMap((e) => e.choices.flatMap((c: any) => c.token_ids ?? []));
}

let copies = 0;
function adapterCopy(name: string, edit: (config: any, dir: string) => void = () => {}): string {
  const dir = join(tmp, `${copies++}-${name}`);
  cpSync(join(adaptersDir(MODEL), name), dir, { recursive: true });
  const path = join(dir, "adapter_config.json");
  const config = JSON.parse(readFileSync(path, "utf8"));
  edit(config, dir);
  writeFileSync(path, JSON.stringify(config, (_, v) => (v === Infinity ? "__INF__" : v)).replace(/"__INF__"/g, "1e400"));
  return dir;
}

function flipByteIn(path: string, at: number): void {
  const bytes = readFileSync(path);
  bytes[at] ^= 0x01;
  writeFileSync(path, bytes);
}

describe("every reproduction, with another adapter's stream in flight", () => {
  let s: FixtureServer;
  let solo: number[];
  beforeAll(async () => {
    s = await startFixtureServer({ maxBodyBytes: 32 << 20 });
    const r = await s.post("/v1/completions", BYSTANDER);
    solo = (await r.json() as any).choices[0].token_ids;
    expect(solo.length).toBe(BYSTANDER.max_tokens);
  });
  afterAll(() => s.close());

  /** Runs `offend` while the bystander streams; then checks the bystander and /ping. */
  async function withBystander(offend: () => Promise<void>): Promise<void> {
    const stream = await s.post("/v1/completions", { ...BYSTANDER, stream: true });
    const ids = streamedIds(stream);
    await offend();
    expect(await ids).toEqual(solo);
    expect((await fetch(`${s.url}/ping`)).status).toBe(200);
    expect(await settled(s.service)).toBe(0);
  }

  async function expectRefusedLoad(dir: string, ...reason: (string | RegExp)[]): Promise<void> {
    const name = `bad${copies}`;
    const r = await s.post("/v1/load_lora_adapter", { lora_name: name, lora_path: dir });
    const err = (await r.json() as any).error;
    expect(r.status).toBe(400);
    for (const x of reason) expect(err.message).toMatch(x);
    expect((await s.post("/v1/completions", { model: name, prompt: "Hi", max_tokens: 1 })).status).toBe(404);
  }

  const configCases: [string, (c: any) => void, RegExp][] = [
    ["a catastrophic-backtracking regex in target_modules", (c) => (c.target_modules = "(.+)+X"), /target_modules/],
    ["an alpha_pattern of 1e400", (c) => (c.alpha_pattern = { q_proj: Infinity }), /alpha_pattern/],
    ["lora_alpha -1e30", (c) => (c.lora_alpha = -1e30), /lora_alpha/],
    ["a rank_pattern rank of 0", (c) => (c.rank_pattern = { q_proj: 0 }), /rank_pattern/],
    ["a fractional rank_pattern rank", (c) => (c.rank_pattern = { q_proj: 2.5 }), /rank_pattern/],
  ];
  for (const [label, edit, field] of configCases) {
    test(`${label}: refused naming the field`, () => withBystander(() => expectRefusedLoad(adapterCopy("es", edit), field)));
  }

  test("a .bin adapter with one byte of tensor data flipped: refused by the entry's CRC-32", () => withBystander(async () => {
    const dir = adapterCopy("ru");
    const file = join(dir, "adapter_model.bin");
    flipByteIn(file, Math.floor(statSync(file).size / 2));
    await expectRefusedLoad(dir, /CRC|crc/);
  }));

  test("a truncated adapter_model.safetensors: refused", () => withBystander(async () => {
    const dir = adapterCopy("es");
    const file = join(dir, "adapter_model.safetensors");
    truncateSync(file, Math.floor(statSync(file).size / 2));
    await expectRefusedLoad(dir, /adapter_model/);
  }));

  test("an 8 MB prompt: refused by its size, naming prompt", () => withBystander(async () => {
    const r = await s.post("/v1/completions", { model: "es", prompt: "word ".repeat((8 << 20) / 5), max_tokens: 2 });
    expect(r.status).toBe(400);
    expect((await r.json() as any).error.param).toBe("prompt");
  }));

  const fieldCases: [string, string, Record<string, unknown>][] = [
    ["max_tokens -1", "/v1/completions", { model: "es", prompt: "Hi", max_tokens: -1 }],
    ["seed 2^60", "/v1/completions", { model: "es", prompt: "Hi", max_tokens: 1, seed: 2 ** 60 }],
    ["a user message without content", "/v1/chat/completions", { model: "es", messages: [{ role: "user" }], max_tokens: 1 }],
  ];
  for (const [label, path, body] of fieldCases) {
    test(`${label}: 400 naming the field`, () => withBystander(async () => {
      const r = await s.post(path, body);
      expect(r.status).toBe(400);
      const err = (await r.json() as any).error;
      const field = label.startsWith("a user") ? "messages" : label.split(" ")[0];
      expect(err.param ?? err.message).toContain(field);
    }));
  }

  test("unloading an adapter that has a stream running: drains it, then goes", () => withBystander(async () => {
    expect((await s.post("/v1/load_lora_adapter", { lora_name: "busy", lora_path: adapterCopy("es") })).status).toBe(200);
    const busy = await s.post("/v1/completions", { model: "busy", prompt: "Hi", max_tokens: 100, ignore_eos: true, stream: true });
    const done = busy.text();
    const unload = await s.post("/v1/unload_lora_adapter", { lora_name: "busy" });
    expect(unload.status).toBe(200);
    expect((await done).endsWith("data: [DONE]\n\n")).toBe(true);
  }));
});

// Tokenizing 512 KB of text takes about a second on the Llama-2 tokenizer; the pool keeps it off the
// event loop. The same request with no pool (tokenizer_threads 0) holds every client up: the control.
describe("a long prompt is tokenized off the event loop", () => {
  const LONG = "the quick brown fox jumps over a lazy dog ".repeat((512 << 10) / 42);

  async function raceWithBystander(tokenizerThreads: number) {
    const s = await startFixtureServer({ maxBodyBytes: 32 << 20, service: { tokenizerThreads, maxPromptBytes: 16 << 20 } });
    try {
      const solo = (await (await s.post("/v1/completions", BYSTANDER)).json() as any).choices[0].token_ids;
      const order: string[] = [];
      const long = s.post("/v1/completions", { model: "es", prompt: LONG, max_tokens: 1 }).then(async (r) => {
        order.push("long");
        return { status: r.status, error: (await r.json() as any).error };
      });
      await Bun.sleep(50); // the long prompt is being tokenized
      const t0 = performance.now();
      const ping = await fetch(`${s.url}/ping`);
      const pingMs = performance.now() - t0;
      const ids = await (await s.post("/v1/completions", BYSTANDER)).json().then((b: any) => b.choices[0].token_ids);
      order.push("bystander");
      const refused = await long;
      return { pingMs, pingStatus: ping.status, order, ids, solo, refused };
    } finally {
      await s.close();
    }
  }

  test("/ping answers within 100 ms and another adapter's request completes first; the prompt is then refused as over the context", async () => {
    const pooled = await raceWithBystander(1);
    expect(pooled.pingStatus).toBe(200);
    expect(pooled.pingMs).toBeLessThan(100);
    expect(pooled.order).toEqual(["bystander", "long"]);
    expect(pooled.ids).toEqual(pooled.solo);
    expect(pooled.refused.status).toBe(400);
    expect(pooled.refused.error.message).toMatch(/over the context length 512/);

    const inline = await raceWithBystander(0);
    // without the pool, everyone waits. (Not /ping's latency: the server shares this test's event loop,
    // so the blocked loop delays the ping's start as much as its answer, and the two runs time alike.)
    expect(inline.order).toEqual(["long", "bystander"]);
  }, 60_000);
});
