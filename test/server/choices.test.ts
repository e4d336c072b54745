// n > 1: choice j samples with seed + j, so every choice equals the same request asked alone with
// that seed, and the whole answer is reproducible; the prompt is computed once (the other choices
// start from its cached blocks); several prompts give index = prompt * n + choice.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sseEvents, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

let s: FixtureServer;
beforeAll(async () => {
  s = await startFixtureServer();
});
afterAll(() => s.close());

const PROMPT = Array.from({ length: 40 }, (_, i) => 400 + i * 13); // two full KV blocks and a part
const sampled = { temperature: 0.9, top_p: 0.95, max_tokens: 8, ignore_eos: true, return_token_ids: true };
const post = async (body: Record<string, unknown>) => (await (await s.post("/v1/completions", { model: "es", ...body })).json()) as any;
const hits = async () => Number(/^vllm:prefix_cache_hits_total\{model_name="tiny-llama2"\} (\d+)$/m.exec(await (await fetch(`${s.url}/metrics`)).text())?.[1] ?? 0);

test("completions n: 4 with a seed: choice j equals the request alone with seed + j; reproducible; the prompt counted once", async () => {
  const before = await hits();
  const four = await post({ prompt: PROMPT, n: 4, seed: 7, ...sampled });
  expect(await hits() - before).toBeGreaterThanOrEqual(3 * 32); // three choices started from the first's two full blocks
  expect(four.choices.map((c: any) => c.index)).toEqual([0, 1, 2, 3]);
  expect(four.usage).toMatchObject({ prompt_tokens: 40, completion_tokens: 32 });
  for (let j = 0; j < 4; j++) {
    const alone = await post({ prompt: PROMPT, seed: 7 + j, ...sampled });
    expect({ j, ids: four.choices[j].token_ids }).toEqual({ j, ids: alone.choices[0].token_ids });
  }
  expect(new Set(four.choices.map((c: any) => c.token_ids.join(","))).size).toBeGreaterThan(1); // they do differ
  const again = await post({ prompt: PROMPT, n: 4, seed: 7, ...sampled });
  expect(again.choices.map((c: any) => c.token_ids)).toEqual(four.choices.map((c: any) => c.token_ids));
});

test("two prompts with n: 2: index = prompt * 2 + choice", async () => {
  const other = PROMPT.map((t) => t + 1);
  const r = await post({ prompt: [PROMPT, other], n: 2, seed: 3, ...sampled });
  const want = [[PROMPT, 3], [PROMPT, 4], [other, 3], [other, 4]] as const;
  for (const [k, [prompt, seed]] of want.entries()) {
    const alone = await post({ prompt, seed, ...sampled });
    expect({ k, index: r.choices[k].index, ids: r.choices[k].token_ids }).toEqual({ k, index: k, ids: alone.choices[0].token_ids });
  }
});

test("chat n: 3, streamed and not, give the same three messages", async () => {
  const body = { model: "fr", messages: [{ role: "user", content: "Tell me something" }], n: 3, seed: 11, temperature: 0.8, max_tokens: 6, ignore_eos: true };
  const whole = (await (await s.post("/v1/chat/completions", body)).json()) as any;
  expect(whole.choices.map((c: any) => c.index)).toEqual([0, 1, 2]);
  const events = sseEvents(await (await s.post("/v1/chat/completions", { ...body, stream: true })).text());
  const texts = ["", "", ""];
  for (const e of events) for (const c of e.choices) texts[c.index] += c.delta.content ?? "";
  expect(texts).toEqual(whole.choices.map((c: any) => c.message.content));
});
