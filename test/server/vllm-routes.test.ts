// vLLM's small routes: a model retrieved by its id (bare or BASE:ADAPTER), /tokenize (prompt or
// chat messages, adapter names allowed) and /detokenize, with 4xx answers naming the field.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { MODEL, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

let s: FixtureServer;
beforeAll(async () => {
  s = await startFixtureServer();
});
afterAll(() => s.close());

const get = (path: string) => fetch(`${s.url}${path}`);

test("GET /v1/models/{id}: the entry /v1/models lists, by bare or qualified name; 404 otherwise", async () => {
  const listed = ((await (await get("/v1/models")).json()) as any).data.find((m: any) => m.id === "es");
  for (const id of ["es", `${MODEL}:es`]) {
    const r = await get(`/v1/models/${id}`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual(listed);
  }
  expect(((await (await get(`/v1/models/${MODEL}`)).json()) as any).parent).toBeNull();
  const missing = await get("/v1/models/org/no-such-model");
  expect(missing.status).toBe(404);
  expect(((await missing.json()) as any).error).toMatchObject({ type: "NotFoundError", param: "model" });
});

test("POST /tokenize: a prompt with and without special tokens, with token strings; an adapter tokenizes as its base", async () => {
  const tok = s.service.model.tokenizer;
  const r = await s.post("/tokenize", { model: "es", prompt: "Hello world", return_token_strs: true });
  expect(await r.json()).toEqual({ count: 3, max_model_len: 512, tokens: tok.encode("Hello world"), token_strs: ["<s>", "▁Hello", "▁world"] });
  const bare = (await (await s.post("/tokenize", { model: MODEL, prompt: "Hello world", add_special_tokens: false })).json()) as any;
  expect(bare).toEqual({ count: 2, max_model_len: 512, tokens: tok.encode("Hello world", { addSpecialTokens: false }), token_strs: null });
});

test("POST /tokenize with messages: the chat template's rendering, as the chat route feeds the model", async () => {
  const messages = [{ role: "user", content: "Hi there" }];
  const r = (await (await s.post("/tokenize", { model: "es", messages })).json()) as any;
  const rendered = s.service.model.chat.render(messages, { addGenerationPrompt: true });
  expect(r.tokens).toEqual(s.service.model.tokenizer.encode(rendered, { addSpecialTokens: false }));
  const chat = (await (await s.post("/v1/chat/completions", { model: "es", messages, max_tokens: 1, return_token_ids: true })).json()) as any;
  expect(chat.prompt_token_ids).toEqual(r.tokens);
});

test("POST /detokenize: the ids' text; ids outside the vocabulary are a 400 naming tokens", async () => {
  const ids = (await (await s.post("/tokenize", { prompt: "Bonjour le monde", add_special_tokens: false })).json() as any).tokens;
  expect(await (await s.post("/detokenize", { model: "fr", tokens: ids })).json()).toEqual({ prompt: "Bonjour le monde" });
  const bad = await s.post("/detokenize", { model: "fr", tokens: [1, 99999] });
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as any).error.param).toBe("tokens");
  expect((await s.post("/tokenize", { model: "nobody", prompt: "x" })).status).toBe(404);
});
