// `serve --stub-model`: the forward pass replaced by fixed tokens of a real text, so the host path
// (HTTP, SSE, detokenization, stop strings, scheduling) runs alone; the tokens are the text's own.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startLoraServe, type Target } from "../../src/bench/serve/target.ts";
import { sseEvents } from "../server/server-fixture.ts";
import { TextTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { modelDir } from "../helpers/fixtures.ts";

// the stub's text, and what its first n tokens add after the prompt "Hello" under the demo model's
// tokenizer: decode(prompt + tokens) less decode(prompt), which keeps the first token's space
const tokenizer = TextTokenizer.fromModelDir(modelDir("tiny-llama2"));
const ids = tokenizer.encode("The quick brown fox jumps over a lazy dog, then sleeps on the mat.", { addSpecialTokens: false });
const prompt = tokenizer.encode("Hello");
const firstTokens = (n: number) => tokenizer.decode([...prompt, ...ids.slice(0, n)]).slice(tokenizer.decode(prompt).length);
const TEXT = firstTokens(ids.length);

let target: Target;
beforeAll(async () => {
  target = await startLoraServe(["--stub-model"]);
}, 60_000);
afterAll(() => target?.stop());

const complete = (body: Record<string, unknown>) =>
  fetch(`${target.url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "es", prompt: "Hello", ...body }) });

test("the stub emits its text token by token, to max_tokens, for an adapter too", async () => {
  const r = (await (await complete({ max_tokens: 9 })).json()) as any;
  expect(r.choices[0].text).toBe(firstTokens(9));
  expect(TEXT.startsWith(r.choices[0].text)).toBe(true);
  expect(r.choices[0].finish_reason).toBe("length");
  expect(r.usage.completion_tokens).toBe(9);
});

test("stop strings and streaming work through the stub as through a model", async () => {
  const stopped = (await (await complete({ max_tokens: 30, stop: ["fox"] })).json()) as any;
  expect(stopped.choices[0].text).toBe(" The quick brown ");
  expect(stopped.choices[0].finish_reason).toBe("stop");
  const events = sseEvents(await (await complete({ max_tokens: 5, stream: true })).text());
  expect(events.map((e) => e.choices[0].text).join("")).toBe(firstTokens(5));
  // past the end the text starts again
  const wrapped = (await (await complete({ max_tokens: ids.length + 2 })).json()) as any;
  expect(wrapped.choices[0].text).toBe(tokenizer.decode([...prompt, ...ids, ids[0], ids[1]]).slice(tokenizer.decode(prompt).length));
});
