// Automatic prefix caching: a 300-token prefix sent 20 times over two adapters is computed once
// per adapter (cached_tokens reports it), never shared across adapters or with the base model, and
// every greedy answer equals the one computed with caching off; under a KV cache small enough to
// force preemption the answers still match and every block is free at the end.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startFixtureServer, type FixtureServer } from "../server/server-fixture.ts";

// 300 prompt tokens of ordinary vocabulary, the same for every request; a distinct last token each
const PREFIX = Array.from({ length: 300 }, (_, i) => 300 + ((i * 37) % 5000));
const prompt = (k: number) => [...PREFIX, 1000 + k];
const adapterOf = (k: number) => (k % 2 === 0 ? "es" : "fr");

async function complete(s: FixtureServer, k: number, model = adapterOf(k)) {
  const r = await s.post("/v1/completions", { model, prompt: prompt(k), max_tokens: 8, temperature: 0, ignore_eos: true, return_token_ids: true });
  const body = (await r.json()) as any;
  expect(r.status).toBe(200);
  return { ids: body.choices[0].token_ids as number[], cached: body.usage.prompt_tokens_details.cached_tokens as number };
}

describe("prefix caching", () => {
  let on: FixtureServer, off: FixtureServer, small: FixtureServer;
  const reference: number[][] = [];
  beforeAll(async () => {
    [on, off, small] = await Promise.all([
      startFixtureServer(),
      startFixtureServer({ load: { prefixCaching: false } }),
      startFixtureServer({ load: { numBlocks: 40 } }),
    ]);
    for (let k = 0; k < 20; k++) reference.push((await complete(off, k)).ids);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([on, off, small].map((s) => s.close()));
  });

  test("sequential: cached_tokens 0 for each adapter's first request, >= 288 after, answers equal to caching off", async () => {
    for (let k = 0; k < 20; k++) {
      const { ids, cached } = await complete(on, k);
      expect({ k, ids }).toEqual({ k, ids: reference[k] });
      if (k < 2) expect({ k, cached }).toEqual({ k, cached: 0 }); // es, then fr: never another adapter's blocks
      else expect(cached).toBeGreaterThanOrEqual(288);
    }
    expect((await complete(on, 0, "tiny-llama2")).cached).toBe(0); // nor the base model's
    expect((await complete(off, 2)).cached).toBe(0);
    const metrics = await (await fetch(`${on.url}/metrics`)).text();
    const hits = Number(/^vllm:prefix_cache_hits_total\{model_name="tiny-llama2"\} (\d+)$/m.exec(metrics)?.[1]);
    expect(hits).toBeGreaterThanOrEqual(18 * 288);
  }, 120_000);

  test("all at once through a 40-block cache: preemptions happen, answers still equal, every block free at the end", async () => {
    const got = await Promise.all(Array.from({ length: 20 }, (_, k) => complete(small, k)));
    got.forEach((g, k) => expect({ k, ids: g.ids }).toEqual({ k, ids: reference[k] }));
    const metrics = await (await fetch(`${small.url}/metrics`)).text();
    expect(Number(/^lora_serve_preemptions_total\{model="tiny-llama2"\} (\d+)$/m.exec(metrics)?.[1] ?? 0)).toBeGreaterThan(0);
    const blocks = small.service.model.engine.blocks;
    expect(blocks.freeBlocks).toBe(blocks.numBlocks);
  }, 120_000);
});
