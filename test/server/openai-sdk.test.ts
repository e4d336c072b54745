// The official OpenAI Node SDK against the server, as a client application uses it: models listed
// and retrieved, completions and chat completions streamed and not (greedy, so streamed equals
// whole), and a 404 surfaced as the SDK's NotFoundError.
import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI, { NotFoundError } from "openai";
import { MODEL, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

let s: FixtureServer;
let client: OpenAI;
beforeAll(async () => {
  s = await startFixtureServer();
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "not-needed", maxRetries: 0 });
});
afterAll(() => s.close());

test("models.list and models.retrieve", async () => {
  const ids: string[] = [];
  for await (const m of client.models.list()) ids.push(m.id);
  expect(ids.sort()).toEqual(["dora", "es", "fr", "rp", "rs", "ru", MODEL].sort());
  const es = await client.models.retrieve("es");
  expect(es).toMatchObject({ id: "es", object: "model", owned_by: "lora-serve" });
});

test("completions: whole and streamed give the same greedy text", async () => {
  const whole = await client.completions.create({ model: "es", prompt: "The capital of France is", max_tokens: 8, temperature: 0 });
  expect(whole.choices[0].text.length).toBeGreaterThan(0);
  expect(whole.usage?.completion_tokens).toBe(8);
  let streamed = "";
  for await (const chunk of await client.completions.create({ model: "es", prompt: "The capital of France is", max_tokens: 8, temperature: 0, stream: true })) {
    streamed += chunk.choices[0]?.text ?? "";
  }
  expect(streamed).toBe(whole.choices[0].text);
});

test("chat completions: whole and streamed give the same greedy message", async () => {
  const messages = [{ role: "user" as const, content: "Say hello" }];
  const whole = await client.chat.completions.create({ model: "fr", messages, max_tokens: 8, temperature: 0 });
  expect(whole.choices[0].message.role).toBe("assistant");
  let streamed = "";
  for await (const chunk of await client.chat.completions.create({ model: "fr", messages, max_tokens: 8, temperature: 0, stream: true })) {
    streamed += chunk.choices[0]?.delta?.content ?? "";
  }
  expect(streamed).toBe(whole.choices[0].message.content!);
});

test("an unknown model is the SDK's NotFoundError, on retrieve and on completions", async () => {
  const retrieve = await client.models.retrieve("no-such-adapter").catch((e) => e);
  expect(retrieve).toBeInstanceOf(NotFoundError);
  const create = await client.completions.create({ model: "no-such-adapter", prompt: "x", max_tokens: 1 }).catch((e) => e);
  expect(create).toBeInstanceOf(NotFoundError);
  expect((create as NotFoundError).status).toBe(404);
});
