// Every bad input gets its status and error shape (naming the field), and the server keeps
// serving: a valid request succeeds after each one.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MODEL, settled, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const VALID = { model: MODEL, prompt: [1, 450, 7483], max_tokens: 3, temperature: 0, ignore_eos: true };
const MAX_BODY = 64 * 1024;

describe("bad requests", () => {
  let s: FixtureServer;
  beforeAll(async () => {
    s = await startFixtureServer({ maxBodyBytes: MAX_BODY });
  });
  afterAll(() => s.close());

  const stillServes = async () => {
    const r = await s.post("/v1/completions", VALID);
    expect(r.status).toBe(200);
    expect((await r.json() as any).usage.completion_tokens).toBe(3);
  };
  const openaiError = async (r: Response, status: number, param: string | null) => {
    expect(r.status).toBe(status);
    const j = await r.json() as any;
    expect(Object.keys(j)).toEqual(["error"]);
    expect(typeof j.error.message).toBe("string");
    expect(typeof j.error.type).toBe("string");
    expect(j.error.param).toBe(param);
    expect(j.error.code).toBe(status);
    await stillServes();
    return j.error;
  };

  test("malformed bodies", async () => {
    await openaiError(await s.post("/v1/completions", "{not json"), 400, null);
    await openaiError(await s.post("/v1/completions", "[1, 2]"), 400, null);
    await openaiError(await s.post("/v1/completions", ""), 400, null);
    const lmi = await s.post("/invocations", "{oops");
    expect(lmi.status).toBe(400);
    expect(await lmi.json()).toEqual({ error: expect.stringContaining("JSON"), code: 400 });
    await stillServes();
  });

  const fieldCases: [string, Record<string, unknown>, string][] = [
    ["temperature", { temperature: "hot" }, "temperature"],
    ["negative temperature", { temperature: -1 }, "temperature"],
    ["top_p out of range", { top_p: 2 }, "top_p"],
    ["top_k not an integer", { top_k: 1.5 }, "top_k"],
    ["max_tokens as a string", { max_tokens: "5" }, "max_tokens"],
    ["max_tokens 0", { max_tokens: 0 }, "max_tokens"],
    ["seed not an integer", { seed: 1.5 }, "seed"],
    ["stop as a number", { stop: 3 }, "stop"],
    ["ignore_eos as a string", { ignore_eos: "yes" }, "ignore_eos"],
    ["stream as a string", { stream: "true" }, "stream"],
    ["logprobs too many", { logprobs: 21 }, "logprobs"],
    ["logprobs as a bool", { logprobs: true }, "logprobs"],
    ["n above 16", { n: 17 }, "n"],
    ["n 0", { n: 0 }, "n"],
    ["best_of other than n", { n: 2, best_of: 3 }, "best_of"],
    ["prompt as a number", { prompt: 5 }, "prompt"],
    ["prompt empty list", { prompt: [] }, "prompt"],
    ["token id outside the vocabulary", { prompt: [1, 32000] }, "prompt"],
    ["negative min_tokens", { min_tokens: -1 }, "min_tokens"],
    ["min_tokens above max_tokens", { min_tokens: 5, max_tokens: 3 }, "min_tokens"],
    ["presence_penalty above 2", { presence_penalty: 2.5 }, "presence_penalty"],
    ["frequency_penalty below -2", { frequency_penalty: -3 }, "frequency_penalty"],
    ["repetition_penalty 0", { repetition_penalty: 0 }, "repetition_penalty"],
    ["min_p above 1", { min_p: 1.5 }, "min_p"],
    ["logit_bias with a word for a key", { logit_bias: { hello: 5 } }, "logit_bias"],
    ["logit_bias above 100", { logit_bias: { "5": 101 } }, "logit_bias"],
    ["logit_bias outside the vocabulary", { logit_bias: { "32000": 1 } }, "logit_bias"],
    ["logit_bias as a list", { logit_bias: [1, 2] }, "logit_bias"],
    ["model as a number", { model: 3 }, "model"],
    ["stream_options as a string", { stream_options: "x" }, "stream_options"],
    ["prompt plus max_tokens over the context", { max_tokens: 510 }, "max_tokens"],
  ];
  for (const [what, patch, param] of fieldCases) {
    test(`completions: ${what} → 400 naming ${param}`, async () => {
      const e = await openaiError(await s.post("/v1/completions", { ...VALID, ...patch }), 400, param);
      expect(e.type).toBe("invalid_request_error");
    });
  }

  test("accepted: min_tokens with ignore_eos, neutral penalties, and fields harmless by definition (user, store, metadata)", async () => {
    const r = await s.post("/v1/completions", { ...VALID, min_tokens: 2, presence_penalty: 0, user: "u", store: false, metadata: { k: "v" }, skip_special_tokens: true });
    expect(r.status).toBe(200);
  });

  test("a field the server would ignore is refused, naming it, on every generation route", async () => {
    const chat = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 3 };
    for (const [field, value] of [["something_new", { a: 1 }], ["guided_whitespace_pattern", " "], ["skip_special_tokens", false]] as const) {
      await openaiError(await s.post("/v1/completions", { ...VALID, [field]: value }), 400, field);
      await openaiError(await s.post("/v1/chat/completions", { ...chat, [field]: value }), 400, field);
    }
    // tools without a forced tool_choice would need a tool-call parser: refused, naming tool_choice
    await openaiError(await s.post("/v1/chat/completions", { ...chat, tools: [{ type: "function", function: { name: "f" } }] }), 400, "tool_choice");
    await openaiError(await s.post("/v1/chat/completions", { ...chat, tools: [{ type: "function" }] }), 400, "tools");
    const lmi = await s.post("/invocations", { inputs: "x", parameters: { max_new_tokens: 2, typical_p: 0.5 } });
    expect(lmi.status).toBe(400);
    expect(((await lmi.json()) as any).error).toContain("parameters.typical_p");
    expect((await s.post("/invocations", { inputs: "x", extra: 1 })).status).toBe(400);
  });

  test("chat: wrong types name the field", async () => {
    const chat = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 3 };
    await openaiError(await s.post("/v1/chat/completions", { ...chat, logprobs: 1 }), 400, "logprobs");
    await openaiError(await s.post("/v1/chat/completions", { ...chat, top_logprobs: 21, logprobs: true }), 400, "top_logprobs");
    await openaiError(await s.post("/v1/chat/completions", { ...chat, messages: "hi" }), 400, "messages");
    await openaiError(await s.post("/v1/chat/completions", { ...chat, max_completion_tokens: 1e6 }), 400, "max_tokens");
  });

  test("LMI: wrong parameter types and inputs in the LMI shape", async () => {
    for (const body of [{ inputs: 5 }, { inputs: "x", parameters: { max_new_tokens: "x" } }, { inputs: "x", parameters: 3 }, { inputs: ["a", "b"], stream: true }]) {
      const r = await s.post("/invocations", body);
      expect(r.status).toBe(400);
      const j = await r.json() as any;
      expect(Object.keys(j).sort()).toEqual(["code", "error"]);
      expect(j.code).toBe(400);
    }
    await stillServes();
  });

  test("unknown model → 404; unknown route → 404; wrong method → 405", async () => {
    const e = await openaiError(await s.post("/v1/completions", { ...VALID, model: "nope" }), 404, "model");
    expect(e.type).toBe("NotFoundError");
    await openaiError(await s.post("/v1/chat/completions", { model: "nope", messages: [{ role: "user", content: "x" }] }), 404, "model");
    await openaiError(await fetch(`${s.url}/v1/nothing`), 404, null);
    const r = await fetch(`${s.url}/v1/completions`);
    expect(r.headers.get("allow")).toBe("POST");
    await openaiError(r, 405, null);
    const lmi = await fetch(`${s.url}/nothing`, { method: "POST" });
    expect(lmi.status).toBe(404);
    expect((await lmi.json() as any).code).toBe(404);
  });

  test("bodies over the limit → 413, by Content-Length and by the bytes read", async () => {
    const big = JSON.stringify({ ...VALID, pad: "x".repeat(MAX_BODY) });
    await openaiError(await s.post("/v1/completions", big), 413, null);
    // chunked: no Content-Length, the limit applies to what arrives
    const chunks = new ReadableStream({
      start(c) {
        const piece = new TextEncoder().encode("x".repeat(8192));
        c.enqueue(new TextEncoder().encode('{"pad": "'));
        for (let i = 0; i < 16; i++) c.enqueue(piece);
        c.enqueue(new TextEncoder().encode('"}'));
        c.close();
      },
    });
    await openaiError(await fetch(`${s.url}/v1/completions`, { method: "POST", body: chunks, headers: { "Content-Type": "application/json" } }), 413, null);
    const lmi = await s.post("/invocations", JSON.stringify({ inputs: "x".repeat(MAX_BODY) }));
    expect(lmi.status).toBe(413);
    expect((await lmi.json() as any).code).toBe(413);
  });

  test("an unexpected exception → 500 in the route's shape, logged; the next request is fine", async () => {
    const submit = s.service.submit;
    s.service.submit = () => {
      throw new Error("boom");
    };
    try {
      const r = await s.post("/v1/completions", VALID);
      expect(r.status).toBe(500);
      expect((await r.json() as any).error.type).toBe("InternalServerError");
      const lmi = await s.post("/invocations", { inputs: "x" });
      expect(lmi.status).toBe(500);
      expect((await lmi.json() as any).code).toBe(500);
    } finally {
      s.service.submit = submit;
    }
    expect(s.logs.some((l) => l.includes("boom"))).toBe(true);
    await stillServes();
  });
});

describe("overload and shutdown", () => {
  test("a full queue → 503 with Retry-After; served again once it empties", async () => {
    const s = await startFixtureServer({ maxQueue: 1, load: { maxSeqs: 1 } });
    try {
      const running = new AbortController();
      const long = await s.post("/v1/completions", { ...VALID, max_tokens: 500, stream: true }, { signal: running.signal });
      expect(long.status).toBe(200);
      const waiting = s.post("/v1/completions", VALID); // queued behind the running one
      const engine = s.service.model.engine;
      for (let i = 0; i < 200 && engine.numWaiting === 0; i++) await Bun.sleep(5);
      expect(engine.numWaiting).toBe(1);
      // both probes at once, while the long request still runs (it has hundreds of steps to go)
      const [refused, lmi] = await Promise.all([s.post("/v1/completions", VALID), s.post("/invocations", { inputs: "x" })]);
      expect(refused.status).toBe(503);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect((await refused.json() as any).error.code).toBe(503);
      expect(lmi.status).toBe(503);
      expect(lmi.headers.get("retry-after")).not.toBeNull();
      running.abort();
      expect((await waiting).status).toBe(200);
      expect((await s.post("/v1/completions", VALID)).status).toBe(200);
      expect(await settled(s.service)).toBe(0);
    } finally {
      await s.close();
    }
  }, 60_000);

  test("drain then stop: a stream in flight is written to its end ([DONE])", async () => {
    const s = await startFixtureServer();
    try {
      const r = await s.post("/v1/completions", { ...VALID, max_tokens: 300, stream: true });
      const reader = r.body!.getReader();
      await reader.read();
      s.server.stopAccepting();
      s.service.beginShutdown();
      await s.service.drain(20_000);
      const stopped = s.server.stop();
      let text = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      await stopped;
      expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
      expect(text).toContain('"finish_reason":"length"');
    } finally {
      s.service.stop();
    }
  }, 60_000);

  test("stopAccepting: work gets 503 + Retry-After, /ping 503, /metrics still 200", async () => {
    const s = await startFixtureServer();
    try {
      expect((await fetch(`${s.url}/ping`)).status).toBe(200);
      s.server.stopAccepting();
      const r = await s.post("/v1/completions", VALID);
      expect(r.status).toBe(503);
      expect(r.headers.get("retry-after")).not.toBeNull();
      expect((await r.json() as any).error.type).toBe("ServiceUnavailableError");
      const lmi = await s.post("/invocations", { inputs: "x" });
      expect(lmi.status).toBe(503);
      expect((await lmi.json() as any).code).toBe(503);
      expect((await fetch(`${s.url}/v1/models`)).status).toBe(503);
      const ping = await fetch(`${s.url}/ping`);
      expect(ping.status).toBe(503);
      expect(ping.headers.get("retry-after")).not.toBeNull();
      expect((await fetch(`${s.url}/health`)).status).toBe(503);
      expect((await fetch(`${s.url}/metrics`)).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});
