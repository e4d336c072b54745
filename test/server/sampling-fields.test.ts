// Penalties, logit_bias and min_p reach the engine from every route under the names each API uses
// (OpenAI / vLLM fields; LMI's parameters, also in its messages form), and change the answer.
import { expect, test } from "bun:test";
import { withFixtureServer } from "./server-fixture.ts";

const fx = withFixtureServer();
const ids = async (r: Response) => {
  expect(r.status).toBe(200);
  const j = (await r.json()) as any;
  return (j.choices[0].token_ids ?? []) as number[];
};
const completion = (extra: Record<string, unknown>) =>
  fx.s.post("/v1/completions", { model: "es", prompt: "Hello there", max_tokens: 6, temperature: 0, ignore_eos: true, return_token_ids: true, ...extra });

test("logit_bias: a +100 token is every token; -100 on the greedy first token moves it", async () => {
  const plain = await ids(await completion({}));
  expect(await ids(await completion({ logit_bias: { "29889": 100 } }))).toEqual(new Array(6).fill(29889));
  const moved = await ids(await completion({ logit_bias: { [String(plain[0])]: -100 } }));
  expect(moved[0]).not.toBe(plain[0]);
});

test("a favoured token repeats until frequency_penalty, presence_penalty or repetition_penalty stops it", async () => {
  const favoured = { logit_bias: { "29889": 16 } };
  const base = await ids(await completion(favoured));
  expect(base.filter((t) => t === 29889).length).toBe(6);
  for (const penalty of [{ frequency_penalty: 2 }, { presence_penalty: 2 }, { repetition_penalty: 100 }]) {
    const got = await ids(await completion({ ...favoured, ...penalty }));
    expect(`${JSON.stringify(penalty)}: ${got.filter((t) => t === 29889).length < base.filter((t) => t === 29889).length}`).toBe(`${JSON.stringify(penalty)}: true`);
  }
});

test("LMI parameters (and the messages form) take repetition_penalty, presence_penalty, frequency_penalty and min_p as the OpenAI route does", async () => {
  const openai = await fx.s.post("/v1/completions", { model: "es", prompt: "Hello there", max_tokens: 6, temperature: 0.9, top_p: 1, top_k: -1, seed: 5, ignore_eos: true, repetition_penalty: 1.5, presence_penalty: 1, frequency_penalty: 0.5, min_p: 0.2 });
  const lmi = await fx.s.post("/invocations", {
    inputs: "Hello there", adapters: "es",
    parameters: { max_new_tokens: 6, do_sample: true, temperature: 0.9, seed: 5, ignore_eos_token: true, repetition_penalty: 1.5, presence_penalty: 1, frequency_penalty: 0.5, min_p: 0.2 },
  });
  expect(lmi.status).toBe(200);
  const text = ((await openai.json()) as any).choices[0].text;
  expect(((await lmi.json()) as any).generated_text).toBe(text);
  const plain = await fx.s.post("/invocations", { inputs: "Hello there", adapters: "es", parameters: { max_new_tokens: 6, do_sample: true, temperature: 0.9, seed: 5, ignore_eos_token: true } });
  expect(((await plain.json()) as any).generated_text).not.toBe(text);
  const chat = await fx.s.post("/invocations", { messages: [{ role: "user", content: "Hi" }], adapters: "es", parameters: { max_new_tokens: 4, repetition_penalty: 1.3, min_p: 0.1 } });
  expect(chat.status).toBe(200);
});

test("bad_words (vLLM's): the greedy first token, given as its text, is not produced", async () => {
  const r = await completion({});
  const plain = await ids(r);
  const word = ((await (await fx.s.post("/detokenize", { model: "es", tokens: [plain[0]] })).json()) as any).prompt as string;
  const got = await ids(await completion({ bad_words: [word] }));
  expect(got).not.toContain(plain[0]);
  expect((await fx.s.post("/v1/completions", { model: "es", prompt: "x", bad_words: 5 })).status).toBe(400);
});
