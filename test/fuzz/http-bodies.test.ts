// Seeded fuzzing of request bodies on the generation routes: valid bodies with fields replaced by
// values of every JSON type, removed, or the text itself mutated. Every answer must be a success or a
// 4xx in the route's error shape (a 500 would be an unhandled case), and the server keeps serving.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { seededRandom } from "../../src/bench/serve/workload.ts";
import { startFixtureServer, type FixtureServer } from "../server/server-fixture.ts";

const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 1500) / 5;
let s: FixtureServer;
beforeAll(async () => {
  s = await startFixtureServer();
});
afterAll(() => s.close());

const BODIES: [string, Record<string, unknown>][] = [
  ["/v1/completions", { model: "es", prompt: "Hello there", max_tokens: 3, temperature: 0.5, top_p: 0.9, top_k: 5, seed: 3, stop: ["x"], logprobs: 2, echo: false, stream: false, min_tokens: 1 }],
  ["/v1/chat/completions", { model: "fr", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }], max_tokens: 3, logprobs: true, top_logprobs: 2, seed: 1, stream: false }],
  ["/invocations", { inputs: ["Hello", "World"], adapters: ["es", "fr"], parameters: { max_new_tokens: 3, do_sample: true, temperature: 0.7, details: true } }],
];
const VALUES = [null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 60, "", "x".repeat(3), [], [1, 2], ["a"], {}, { a: 1 }, [[1]], "es", "🙂"];

function mutateBody(body: Record<string, unknown>, random: () => number): string {
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
  const copy = structuredClone(body) as Record<string, unknown>;
  const keys = Object.keys(copy);
  const kind = Math.floor(random() * 4);
  if (kind === 0) copy[pick(keys)] = pick(VALUES);
  else if (kind === 1) delete copy[pick(keys)];
  else if (kind === 2) {
    const nested = copy[pick(keys)];
    if (nested && typeof nested === "object") (nested as Record<string, unknown>)[pick(Object.keys(nested as object).concat(["0", "content", "role", "max_new_tokens"]))] = pick(VALUES);
  } else {
    const text = JSON.stringify(copy);
    const i = Math.floor(random() * text.length);
    return text.slice(0, i) + pick(['"', "{", "]", ",", "\\", "\u0000", "}"]) + text.slice(i + 1);
  }
  return JSON.stringify(copy);
}

test("mutated bodies get a success or a 4xx in the route's shape, never a 500; the server keeps serving", async () => {
  const random = seededRandom(2024);
  const counts = { ok: 0, clientError: 0 };
  for (let i = 0; i < ITERATIONS; i++) {
    const [path, body] = BODIES[i % BODIES.length];
    const text = mutateBody(body, random);
    const r = await s.post(path, text);
    const answer = await r.text();
    if (r.status >= 500) throw new Error(`case ${i}: ${path} ${text} -> ${r.status} ${answer.slice(0, 300)}`);
    if (r.status >= 400) {
      const err = JSON.parse(answer).error;
      expect(path === "/invocations" ? typeof err : typeof err?.message).toBe("string");
      counts.clientError++;
    } else counts.ok++;
  }
  console.log(`fuzz HTTP bodies: ${ITERATIONS} inputs, ${counts.clientError} clean 4xx, ${counts.ok} served, 0 server errors`);
  expect((await s.post("/v1/completions", { model: "es", prompt: "Hello", max_tokens: 2 })).status).toBe(200);
}, Math.max(180_000, ITERATIONS * 100));
