// --api-key: every route but /ping, /health and /metrics needs `Authorization: Bearer <key>` with
// one of the keys; a missing or wrong key is a 401 in the route's error shape.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ApiKeys } from "../../src/server/api-keys.ts";
import { startFixtureServer, type FixtureServer } from "./server-fixture.ts";

let s: FixtureServer;
beforeAll(async () => {
  s = await startFixtureServer({ apiKeys: ["first-key", "second-key"] });
});
afterAll(() => s.close());

const PROTECTED: [string, string, unknown][] = [
  ["POST", "/v1/completions", { model: "es", prompt: "Hi", max_tokens: 1 }],
  ["POST", "/v1/chat/completions", { model: "es", messages: [{ role: "user", content: "Hi" }], max_tokens: 1 }],
  ["GET", "/v1/models", undefined],
  ["POST", "/v1/unload_lora_adapter", { lora_name: "no-such-adapter" }],
  ["POST", "/invocations", { inputs: "Hi", parameters: { max_new_tokens: 1 } }],
  ["GET", "/adapters", undefined],
];

function call(method: string, path: string, body: unknown, authorization?: string): Promise<Response> {
  const headers: Record<string, string> = { "Content-Type": "application/json", ...(authorization ? { Authorization: authorization } : {}) };
  return fetch(`${s.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

test("no key, a wrong key, or a key without Bearer: 401 on every protected route, in its error shape", async () => {
  for (const [method, path, body] of PROTECTED) {
    for (const auth of [undefined, "Bearer wrong-key", "Bearer first-key-but-longer", "first-key", "Basic Zmlyc3Qta2V5"]) {
      const r = await call(method, path, body, auth);
      expect({ path, auth, status: r.status }).toEqual({ path, auth, status: 401 });
      expect(r.headers.get("www-authenticate")).toBe("Bearer");
      const err = (await r.json() as any).error;
      if (path.startsWith("/v1/")) expect(err).toMatchObject({ type: "AuthenticationError", code: 401 });
      else expect(err).toContain("API key");
    }
  }
});

test("either key opens every protected route; unload of an unknown adapter is then a 404, not a 401", async () => {
  for (const key of ["first-key", "second-key"]) {
    for (const [method, path, body] of PROTECTED) {
      const r = await call(method, path, body, `Bearer ${key}`);
      expect({ path, status: r.status }).toEqual({ path, status: path === "/v1/unload_lora_adapter" ? 404 : 200 });
    }
  }
});

test("/ping, /health and /metrics stay open", async () => {
  for (const path of ["/ping", "/health", "/metrics"]) expect((await fetch(`${s.url}${path}`)).status).toBe(200);
});

test("ApiKeys: no keys allows everything; the header's scheme is case-insensitive", () => {
  expect(new ApiKeys([]).allows(null)).toBe(true);
  const keys = new ApiKeys(["k"]);
  expect([keys.allows("bearer k"), keys.allows("Bearer  k "), keys.allows("Bearer"), keys.allows(null)]).toEqual([true, true, false, false]);
});
