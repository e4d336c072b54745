// Fields a client gets wrong are answered with a 400 naming that field: max_tokens -1 is about
// max_tokens (not min_tokens), a seed JSON cannot carry exactly is refused, a user message needs content.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startFixtureServer, type FixtureServer } from "./server-fixture.ts";

let s: FixtureServer;
beforeAll(async () => {
  s = await startFixtureServer();
});
afterAll(() => s.close());

async function refused(path: string, body: string | Record<string, unknown>) {
  const r = await s.post(path, body);
  return { status: r.status, error: ((await r.json()) as any).error };
}

test("max_tokens -1 and 0 name max_tokens", async () => {
  for (const max of [-1, 0]) {
    const { status, error } = await refused("/v1/completions", { model: "es", prompt: "Hi", max_tokens: max });
    expect(status).toBe(400);
    expect(error.param).toBe("max_tokens");
    expect(error.message).toBe(`max_tokens must be an integer >= 1, got ${max}`);
  }
});

test("a seed beyond 2^53 is refused; one within is served", async () => {
  // written as raw JSON: 18014398509481985 (2^54 + 1) parses to 18014398509481984
  const { status, error } = await refused("/v1/completions", '{"model": "es", "prompt": "Hi", "max_tokens": 2, "seed": 18014398509481985}');
  expect(status).toBe(400);
  expect(error.param).toBe("seed");
  expect((await s.post("/v1/completions", { model: "es", prompt: "Hi", max_tokens: 2, seed: 2 ** 53 - 1 })).status).toBe(200);
});

test("a user message without content is refused; an assistant turn may have none", async () => {
  const { status, error } = await refused("/v1/chat/completions", { model: "es", messages: [{ role: "user" }], max_tokens: 2 });
  expect(status).toBe(400);
  expect(error.message).toBe("messages[0].content is required for a user message");
  const ok = await s.post("/v1/chat/completions", { model: "es", messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: null }, { role: "user", content: "Again" }], max_tokens: 2 });
  expect(ok.status).toBe(200);
});
