// A prompt too long for the context is refused by its byte length before it is tokenized: an 8 MB
// prompt gets a 400 naming the field at once, and /ping answers within 100 ms meanwhile.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startFixtureServer, type FixtureServer } from "./server-fixture.ts";

let s: FixtureServer;
beforeAll(async () => {
  s = await startFixtureServer({ maxBodyBytes: 32 << 20 });
});
afterAll(() => s.close());

const EIGHT_MB = "word ".repeat((8 << 20) / 5);

test("the cap is the context length times the longest token's bytes", () => {
  // tiny-llama2: 512 tokens of context, the longest Llama-2 vocabulary entry is 48 bytes
  expect(s.service.maxPromptBytes).toBe(512 * 48);
});

test("an 8 MB prompt is refused at once on every route, naming its field; /ping stays fast meanwhile", async () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["/v1/completions", { model: "es", prompt: EIGHT_MB, max_tokens: 2 }, "prompt"],
    ["/v1/chat/completions", { model: "es", messages: [{ role: "user", content: EIGHT_MB }], max_tokens: 2 }, "messages"],
    ["/invocations", { inputs: EIGHT_MB, parameters: { max_new_tokens: 2 } }, "inputs"],
  ];
  for (const [path, body, field] of cases) {
    const sent = s.post(path, body);
    const t0 = performance.now();
    const ping = await fetch(`${s.url}/ping`);
    const pingMs = performance.now() - t0;
    const r = await sent;
    expect(ping.status).toBe(200);
    expect(pingMs).toBeLessThan(100);
    expect(r.status).toBe(400);
    const text = await r.text();
    expect(text).toContain(`the ${field} is ${Buffer.byteLength(EIGHT_MB)} bytes, more than the 24576`);
  }
  expect((await s.post("/v1/completions", { model: "es", prompt: "Hello", max_tokens: 2 })).status).toBe(200);
});
