// Prompt log-probabilities, computed in the prefill step's batched forward: vLLM's prompt_logprobs
// and OpenAI's echo + logprobs give, at every prompt position but the first, the token's
// log-probability and the likeliest alternatives, equal to what HF transformers computes (the
// fixture's top-16 logits and logsumexp) within the CPU twin's logit tolerance, twice over (a
// logprob is a logit less a logsumexp, each within 1e-4: see test/engine/fixtures.test.ts).
import { expect, test } from "bun:test";
import type { ReferenceCase } from "../helpers/fixtures.ts";
import { MODEL, startFixtureServer, withFixtureServer } from "./server-fixture.ts";

const TOL = 2e-4;
const fx = withFixtureServer();

type Entry = Record<string, { logprob: number; rank: number | null; decoded_token: string }> | null;

function expectLikeReference(entries: Entry[], c: ReferenceCase): void {
  expect(entries.length).toBe(c.prompt_ids.length);
  expect(entries[0]).toBeNull();
  for (let p = 1; p < entries.length; p++) {
    const e = entries[p]!;
    const want = c.topk_logits[p - 1].map((l) => l - c.logsumexp[p - 1]);
    const got = Object.values(e).filter((x) => x.rank !== null && x.rank <= 16).sort((a, b) => a.rank! - b.rank!).map((x) => x.logprob);
    expect(got.length).toBe(16);
    got.forEach((g, j) => expect(Math.abs(g - want[j])).toBeLessThan(TOL));
    const token = c.prompt_ids[p], at = c.topk_ids[p - 1].indexOf(token);
    expect(e[token]).toBeDefined(); // the prompt's own token is always listed
    if (at >= 0) expect(Math.abs(e[token].logprob - want[at])).toBeLessThan(TOL);
    else expect(e[token].rank).toBeGreaterThan(16);
  }
}

test("prompt_logprobs: 16 alternatives at every position equal the HF fixture's, for the base and each adapter", async () => {
  for (const c of fx.cases.filter((x) => x.prompt === "plain")) {
    const r = (await (await fx.s.post("/v1/completions", { model: c.adapter ?? MODEL, prompt: c.prompt_ids, max_tokens: 1, prompt_logprobs: 16 })).json()) as any;
    expectLikeReference(r.choices[0].prompt_logprobs, c);
  }
});

test("echo + logprobs fills the echoed prompt's positions with the same values; a cached prompt is scored all the same", async () => {
  const c = fx.cases.find((x) => x.adapter === "es" && x.prompt === "plain")!;
  const body = { model: "es", prompt: c.prompt_ids, max_tokens: 2, temperature: 0, prompt_logprobs: 2 };
  const first = (await (await fx.s.post("/v1/completions", body)).json()) as any;
  const again = (await (await fx.s.post("/v1/completions", { ...body, echo: true, logprobs: 2 })).json()) as any;
  const lp = again.choices[0].logprobs;
  expect(lp.token_logprobs[0]).toBeNull();
  for (let p = 1; p < c.prompt_ids.length; p++) {
    expect(lp.token_logprobs[p]).toBeCloseTo(first.choices[0].prompt_logprobs[p][c.prompt_ids[p]].logprob, 6);
  }
  expect(again.choices[0].prompt_logprobs).toEqual(first.choices[0].prompt_logprobs);
});

test("chat prompt_logprobs at the top level; with n: 2 the prompt is scored once", async () => {
  const r = (await (await fx.s.post("/v1/chat/completions", { model: "fr", messages: [{ role: "user", content: "Hi" }], max_tokens: 2, n: 2, seed: 1, temperature: 0.5, prompt_logprobs: 1 })).json()) as any;
  expect(r.choices.length).toBe(2);
  expect(r.prompt_logprobs[0]).toBeNull();
  expect(r.prompt_logprobs.length).toBe(r.usage.prompt_tokens);
  expect(r.prompt_logprobs.slice(1).every((e: Entry) => e !== null && Object.values(e).every((x) => x.logprob <= 0))).toBe(true);
});

test("a prompt longer than the logit rows a step holds is refused, naming the limit", async () => {
  const small = await startFixtureServer({ load: { maxLogitRows: 64 } });
  try {
    const long = Array.from({ length: 100 }, (_, i) => 300 + i);
    const r = await small.post("/v1/completions", { model: MODEL, prompt: long, max_tokens: 1, prompt_logprobs: 0 });
    expect(r.status).toBe(400);
    expect(((await r.json()) as any).error.message).toContain("prompt log-probabilities are computed for prompts of up to 64 tokens");
    expect((await small.post("/v1/completions", { model: MODEL, prompt: long, max_tokens: 1 })).status).toBe(200);
  } finally {
    await small.close();
  }
});

test("max_tokens 0 with echo scores the prompt without generating, whole and streamed; without echo it is refused", async () => {
  const c = fx.cases.find((x) => x.adapter === null && x.prompt === "plain")!;
  const body = { model: MODEL, prompt: c.prompt_ids, max_tokens: 0, echo: true, logprobs: 1 };
  const r = (await (await fx.s.post("/v1/completions", body)).json()) as any;
  expect(r.usage).toMatchObject({ prompt_tokens: c.prompt_ids.length, completion_tokens: 0 });
  const ch = r.choices[0];
  expect(ch.finish_reason).toBe("length");
  expect(ch.logprobs.tokens.length).toBe(c.prompt_ids.length);
  expect(ch.logprobs.token_logprobs[0]).toBeNull();
  expect(Math.abs(ch.logprobs.token_logprobs[1] - (c.topk_ids[0].includes(c.prompt_ids[1]) ? c.topk_logits[0][c.topk_ids[0].indexOf(c.prompt_ids[1])] - c.logsumexp[0] : ch.logprobs.token_logprobs[1]))).toBeLessThan(TOL);
  const streamed = (await (await fx.s.post("/v1/completions", { ...body, stream: true })).text()).split("\n\n").filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6)));
  expect(streamed.length).toBe(1);
  expect(streamed[0].choices[0]).toMatchObject({ text: ch.text, finish_reason: "length" });
  expect(streamed[0].choices[0].logprobs.token_logprobs).toEqual(ch.logprobs.token_logprobs);
  expect((await fx.s.post("/v1/completions", { ...body, echo: false })).status).toBe(400);
});
