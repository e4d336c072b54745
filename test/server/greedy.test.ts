// 64 concurrent greedy requests over HTTP, spread over the base and every adapter: each gets the
// HF reference tokens, streaming or not, and streaming assembles to the same text.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { comparableSteps, readReference, type ReferenceCase } from "../helpers/fixtures.ts";
import { MODEL, sseEvents, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const N = 64;
const MIN_MARGIN = 2e-4;

describe("64 concurrent greedy completions over HTTP", () => {
  let s: FixtureServer;
  let cases: ReferenceCase[];
  beforeAll(async () => {
    s = await startFixtureServer();
    cases = (await readReference(MODEL)).cases;
  });
  afterAll(() => s.close());

  const bodyFor = (c: ReferenceCase, stream: boolean) => ({
    model: c.adapter ?? MODEL, prompt: c.prompt_ids, temperature: 0, ignore_eos: true,
    max_tokens: c.greedy_ids.length, return_token_ids: true, stream,
  });
  const expectGreedy = (c: ReferenceCase, ids: number[]) => {
    const n = comparableSteps(c.greedy_steps, MIN_MARGIN);
    expect(n).toBeGreaterThan(0);
    expect(ids.length).toBe(c.greedy_ids.length);
    expect(ids.slice(0, n)).toEqual(c.greedy_ids.slice(0, n));
  };

  test("every request gets the reference greedy ids; streaming gives the same ids and text", async () => {
    const picked = Array.from({ length: N }, (_, i) => cases[i % cases.length]);
    expect(new Set(picked.map((c) => c.adapter)).size).toBe(7); // the base and all six adapters
    const [plain, streamed] = await Promise.all([
      Promise.all(picked.map(async (c) => {
        const r = await s.post("/v1/completions", bodyFor(c, false));
        expect(r.status).toBe(200);
        return r.json() as Promise<any>;
      })),
      Promise.all(picked.map(async (c) => {
        const r = await s.post("/v1/completions", bodyFor(c, true));
        expect(r.status).toBe(200);
        expect(r.headers.get("content-type")).toContain("text/event-stream");
        return sseEvents(await r.text());
      })),
    ]);
    picked.forEach((c, i) => {
      const p = plain[i];
      expect(p.object).toBe("text_completion");
      expect(p.model).toBe(c.adapter ?? MODEL);
      const choice = p.choices[0];
      expect(choice.finish_reason).toBe("length");
      expect(choice.prompt_token_ids).toEqual(c.prompt_ids);
      expectGreedy(c, choice.token_ids);
      expect(p.usage).toMatchObject({ prompt_tokens: c.prompt_ids.length, completion_tokens: c.greedy_ids.length, total_tokens: c.prompt_ids.length + c.greedy_ids.length });
      expect(p.usage.prompt_tokens_details.cached_tokens).toBeLessThan(c.prompt_ids.length);

      const chunks = streamed[i];
      expect(chunks.every((k) => k.object === "text_completion" && k.id === chunks[0].id)).toBe(true);
      const ids = chunks.flatMap((k) => k.choices[0].token_ids);
      expect(ids).toEqual(choice.token_ids);
      expect(chunks.map((k) => k.choices[0].text).join("")).toBe(choice.text);
      expect(chunks[0].choices[0].prompt_token_ids).toEqual(c.prompt_ids);
      expect(chunks.at(-1).choices[0].finish_reason).toBe("length");
      expect(chunks.slice(0, -1).every((k) => k.choices[0].finish_reason === null)).toBe(true);
    });
    expect(s.service.inFlight).toBe(0);
  }, 120_000);

  test("a text prompt, a batch of prompts, logprobs, echo and usage in the stream", async () => {
    const c = cases.find((x) => x.adapter === "es" && x.prompt === "plain")!;
    const text = "The capital of France is";
    const one = await (await s.post("/v1/completions", { model: "es", prompt: text, max_tokens: 5, temperature: 0, ignore_eos: true, logprobs: 3, echo: true })).json() as any;
    const ch = one.choices[0];
    expect(ch.text.startsWith(text)).toBe(true);
    const lp = ch.logprobs;
    const promptLen = one.usage.prompt_tokens;
    expect(lp.tokens.length).toBe(promptLen + 5);
    // echo with logprobs scores the prompt: nothing predicts its first token (test/server/prompt-logprobs.test.ts checks the values)
    expect(lp.token_logprobs[0]).toBeNull();
    expect(lp.token_logprobs.slice(1, promptLen).every((x: number) => x <= 0)).toBe(true);
    for (let i = promptLen; i < lp.tokens.length; i++) {
      expect(lp.token_logprobs[i]).toBeLessThanOrEqual(0);
      expect(Object.keys(lp.top_logprobs[i]).length).toBeGreaterThanOrEqual(3);
      expect(lp.text_offset[i]).toBeGreaterThanOrEqual(text.length);
    }
    // a batch: one choice per prompt, in order, each the same as alone
    const batch = await (await s.post("/v1/completions", { model: "es", prompt: [c.prompt_ids, c.prompt_ids.slice(0, 5)], max_tokens: 4, temperature: 0, ignore_eos: true, return_token_ids: true })).json() as any;
    expect(batch.choices.map((x: any) => x.index)).toEqual([0, 1]);
    expect(batch.choices[0].token_ids).toEqual(c.greedy_ids.slice(0, 4));
    expect(batch.usage.prompt_tokens).toBe(c.prompt_ids.length + 5);
    const streamed = sseEvents(await (await s.post("/v1/completions", { model: "es", prompt: c.prompt_ids, max_tokens: 4, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } })).text());
    const last = streamed.at(-1);
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: c.prompt_ids.length, completion_tokens: 4, total_tokens: c.prompt_ids.length + 4, prompt_tokens_details: { cached_tokens: expect.any(Number) } });
    expect(streamed.slice(0, -1).every((k) => k.usage === null)).toBe(true);
  }, 60_000);

  test("stop strings end the text before the stop string with finish_reason stop", async () => {
    const c = cases.find((x) => x.adapter === null && x.prompt === "plain")!;
    const full = await (await s.post("/v1/completions", { model: MODEL, prompt: c.prompt_ids, max_tokens: 12, temperature: 0, ignore_eos: true })).json() as any;
    const text: string = full.choices[0].text;
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
    expect(stop.trim().length).toBeGreaterThan(0);
    const cut = await (await s.post("/v1/completions", { model: MODEL, prompt: c.prompt_ids, max_tokens: 12, temperature: 0, ignore_eos: true, stop })).json() as any;
    expect(cut.choices[0].finish_reason).toBe("stop");
    expect(cut.choices[0].text).toBe(text.slice(0, text.indexOf(stop)));
    // vLLM's stop_reason: the stop string that matched; null where the length ended it
    expect(cut.choices[0].stop_reason).toBe(stop);
    expect(full.choices[0].stop_reason).toBeNull();
    const streamed = sseEvents(await (await s.post("/v1/completions", { model: MODEL, prompt: c.prompt_ids, max_tokens: 12, temperature: 0, ignore_eos: true, stop: ["zz-never", stop], stream: true })).text());
    expect(streamed.at(-1).choices[0]).toMatchObject({ finish_reason: "stop", stop_reason: stop });
    const chat = await (await s.post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 6, temperature: 0, ignore_eos: true })).json() as any;
    expect(chat.choices[0]).toMatchObject({ finish_reason: "length", stop_reason: null });
  }, 60_000);

  test("stop_token_ids end generation at that token (kept), even with ignore_eos; stop_reason is its id; min_tokens defers it", async () => {
    const c = cases.find((x) => x.adapter === null && x.prompt === "plain")!;
    const body = { model: MODEL, prompt: c.prompt_ids, max_tokens: 12, temperature: 0, ignore_eos: true, return_token_ids: true };
    const full = (await (await s.post("/v1/completions", body)).json() as any).choices[0].token_ids as number[];
    const stopId = full[2];
    const first = full.indexOf(stopId);
    const cut = (await (await s.post("/v1/completions", { ...body, stop_token_ids: [stopId] })).json() as any).choices[0];
    expect(cut).toMatchObject({ finish_reason: "stop", stop_reason: stopId, token_ids: full.slice(0, first + 1) });
    const deferred = (await (await s.post("/v1/completions", { ...body, stop_token_ids: [stopId], min_tokens: first + 2 })).json() as any).choices[0];
    expect(deferred.token_ids.slice(0, first + 1)).not.toContain(stopId); // masked before min_tokens, as vLLM does
    const outside = await s.post("/v1/completions", { ...body, stop_token_ids: [32000] });
    expect(outside.status).toBe(400);
    expect((await outside.json() as any).error.param).toBe("stop_token_ids");
  }, 60_000);
});
