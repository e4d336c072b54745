// A client that goes away frees its sequence: the service ends the request (counted as an abort)
// and has nothing in flight afterwards.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KvCache } from "../../src/engine/kv-cache.ts";
import { readModelConfig } from "../../src/model/config.ts";
import { modelDir } from "../helpers/fixtures.ts";
import { MODEL, settled, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const LONG = { prompt: [1, 450, 7483], max_tokens: 500, temperature: 0, ignore_eos: true };

describe("client disconnects", () => {
  let s: FixtureServer;
  beforeAll(async () => {
    // a KV cache for one full-length sequence: a leaked sequence would block the next request
    const config = readModelConfig(modelDir(MODEL));
    s = await startFixtureServer({ load: { maxSeqs: 4, kvCacheBytes: KvCache.blockBytes(config, 16, "F32") * Math.ceil(config.maxPositions / 16) } });
  });
  afterAll(() => s.close());
  const aborts = async (adapter: string) => (await s.metrics.requests.get({ model: MODEL, adapter, finish_reason: "abort" }));
  const freeBlocks = () => s.service.model.engine.blocks.freeBlocks;

  for (const [route, body] of [
    ["/v1/completions", { ...LONG, model: "es", stream: true }],
    ["/v1/chat/completions", { ...LONG, prompt: undefined, model: "es", messages: [{ role: "user", content: "hi" }], stream: true }],
    ["/invocations", { inputs: "hi", adapters: "es", stream: true, parameters: { max_new_tokens: 500, ignore_eos_token: true } }],
  ] as const) {
    test(`mid-stream on ${route}`, async () => {
      const before = await aborts("es");
      const blocks = freeBlocks();
      const ac = new AbortController();
      const r = await s.post(route, body, { signal: ac.signal });
      expect(r.status).toBe(200);
      const reader = r.body!.getReader();
      await reader.read();
      await reader.read();
      expect(s.service.inFlight).toBe(1);
      ac.abort();
      expect(await settled(s.service)).toBe(0);
      expect(await aborts("es")).toBe(before + 1);
      expect(freeBlocks()).toBe(blocks);
      const next = await s.post("/v1/completions", { ...LONG, model: "es" });
      expect(next.status).toBe(200);
      expect((await next.json() as any).usage.completion_tokens).toBe(500);
    }, 60_000);
  }

  test("while waiting for a non-streaming answer", async () => {
    const before = await aborts("");
    const ac = new AbortController();
    const pending = s.post("/v1/completions", { ...LONG, model: MODEL }, { signal: ac.signal }).catch((e) => e);
    for (let i = 0; i < 200 && s.service.inFlight === 0; i++) await Bun.sleep(2);
    ac.abort();
    expect(await pending).toBeInstanceOf(Error);
    expect(await settled(s.service)).toBe(0);
    expect(await aborts("")).toBe(before + 1);
  }, 60_000);
});
