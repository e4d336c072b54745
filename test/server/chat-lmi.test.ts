// Chat completions through the llama2 chat template, the SageMaker LMI /invocations forms, /ping,
// /metrics and /v1/models.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { comparableSteps, readReference, type ReferenceCase } from "../helpers/fixtures.ts";
import { MODEL, jsonLines, sseEvents, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const CHAT = [{ role: "user", content: "Piensa en una excusa creativa para decir que no necesito ir a la fiesta." }];

describe("chat, LMI and models routes", () => {
  let s: FixtureServer;
  let cases: ReferenceCase[];
  beforeAll(async () => {
    s = await startFixtureServer();
    cases = (await readReference(MODEL)).cases;
  });
  afterAll(() => s.close());
  const chatCase = (adapter: string | null) => cases.find((c) => c.adapter === adapter && c.prompt === "chat")!;
  const comparable = (c: ReferenceCase) => comparableSteps(c.greedy_steps, 2e-4);

  test("chat: the template's prompt ids, reference greedy ids, logprobs with top_logprobs", async () => {
    const c = chatCase("fr");
    const r = await s.post("/v1/chat/completions", {
      model: "fr", messages: CHAT, max_tokens: 12, temperature: 0, ignore_eos: true, logprobs: true, top_logprobs: 3, return_token_ids: true,
    });
    expect(r.status).toBe(200);
    const j = await r.json() as any;
    expect(j.object).toBe("chat.completion");
    expect(j.id).toStartWith("chatcmpl-");
    expect(j.prompt_token_ids).toEqual(c.prompt_ids);
    const choice = j.choices[0];
    const n = comparable(c);
    expect(choice.token_ids.slice(0, n)).toEqual(c.greedy_ids.slice(0, n));
    expect(choice.message.role).toBe("assistant");
    expect(choice.finish_reason).toBe("length");
    const content = choice.logprobs.content;
    expect(content.length).toBe(12);
    for (const t of content) {
      expect(typeof t.token).toBe("string");
      expect(t.bytes).toEqual([...new TextEncoder().encode(t.token)]);
      expect(t.top_logprobs.length).toBe(3);
      // greedy: the chosen token is the most likely one
      expect(t.logprob).toBeCloseTo(t.top_logprobs[0].logprob, 5);
    }
    expect(j.usage.prompt_tokens).toBe(c.prompt_ids.length);

    // streaming: role first, then the same text; content parts as a list of text parts
    const events = sseEvents(await (await s.post("/v1/chat/completions", {
      model: "fr", messages: [{ role: "user", content: [{ type: "text", text: CHAT[0].content }] }], max_completion_tokens: 12, temperature: 0, ignore_eos: true, stream: true,
    })).text());
    expect(events[0].choices[0].delta.role).toBe("assistant");
    expect(events.every((e) => e.object === "chat.completion.chunk")).toBe(true);
    expect(events.map((e) => e.choices[0].delta.content).join("")).toBe(choice.message.content);
    expect(events.at(-1).choices[0].finish_reason).toBe("length");
  }, 60_000);

  test("chat errors: an image part, roles that do not alternate, top_logprobs without logprobs", async () => {
    const bad = async (body: unknown, param: string) => {
      const r = await s.post("/v1/chat/completions", body);
      expect(r.status).toBe(400);
      const j = await r.json() as any;
      expect(j.error.param).toBe(param);
      expect(j.error.type).toBe("invalid_request_error");
      return j.error.message as string;
    };
    await bad({ model: MODEL, messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x" } }] }] }, "messages");
    const msg = await bad({ model: MODEL, messages: [{ role: "user", content: "a" }, { role: "user", content: "b" }] }, "messages");
    expect(msg.toLowerCase()).toContain("alternate");
    await bad({ model: MODEL, messages: CHAT, top_logprobs: 2 }, "top_logprobs");
    await bad({ model: MODEL, messages: [] }, "messages");
  });

  test("LMI /invocations: string, list with adapters, details, header, stream, messages", async () => {
    const inputs = ["The capital of France is", "Once upon a time"];
    const one = await s.post("/invocations", { inputs: inputs[0], parameters: { max_new_tokens: 6, details: true, ignore_eos_token: true } });
    expect(one.status).toBe(200);
    const o = await one.json() as any;
    expect(typeof o.generated_text).toBe("string");
    expect(o.details.generated_tokens).toBe(6);
    expect(o.details.finish_reason).toBe("length");
    expect(o.details.inputs).toBe(inputs[0]);
    expect(o.details.tokens.map((t: any) => t.text).join("")).toBe(o.generated_text);
    expect(o.details.tokens.every((t: any) => Number.isInteger(t.id) && t.log_prob <= 0 && t.special === false)).toBe(true);
    // decoder_input_details: the prompt's tokens with their log-probabilities (none for the first)
    const prefill = (await (await s.post("/invocations", { inputs: inputs[0], parameters: { max_new_tokens: 2, details: true, decoder_input_details: true } })).json()) as any;
    const ids = s.service.model.tokenizer.encode(inputs[0]);
    expect(prefill.details.prefill.map((t: any) => t.id)).toEqual(ids);
    expect(prefill.details.prefill[0].log_prob).toBeNull();
    expect(prefill.details.prefill.slice(1).every((t: any) => t.log_prob <= 0)).toBe(true);
    expect(o.details.prefill).toBeUndefined(); // not asked
    // without do_sample LMI is greedy: the same answer again, and with a temperature too
    const again = await (await s.post("/invocations", { inputs: inputs[0], parameters: { max_new_tokens: 6, temperature: 5, ignore_eos_token: true } })).json() as any;
    expect(again.generated_text).toBe(o.generated_text);
    const full = await (await s.post("/invocations", { inputs: inputs[0], parameters: { max_new_tokens: 6, return_full_text: true, ignore_eos_token: true } })).json() as any;
    expect(full.generated_text).toBe(inputs[0] + o.generated_text);

    // a list with per-input adapters ("" = base) equals each one alone
    const list = await s.post("/invocations", { inputs, adapters: ["es", ""], parameters: { max_new_tokens: 6, ignore_eos_token: true } });
    const l = await list.json() as any[];
    expect(l.length).toBe(2);
    const esAlone = await (await s.post("/invocations", { inputs: inputs[0], parameters: { max_new_tokens: 6, ignore_eos_token: true } }, { headers: { "X-Amzn-SageMaker-Adapter-Identifier": "es" } })).json() as any;
    const baseAlone = await (await s.post("/invocations", { inputs: inputs[1], parameters: { max_new_tokens: 6, ignore_eos_token: true } })).json() as any;
    expect(l[0].generated_text).toBe(esAlone.generated_text);
    expect(l[1].generated_text).toBe(baseAlone.generated_text);
    expect(esAlone.generated_text).not.toBe(o.generated_text);

    const mismatch = await s.post("/invocations", { inputs, adapters: ["es"] });
    expect(mismatch.status).toBe(400);
    expect(await mismatch.json()).toEqual({ error: expect.stringContaining("adapters"), code: 400 });
    const unknown = await s.post("/invocations", { inputs: "x", adapters: "nope" });
    expect(unknown.status).toBe(404);

    // streaming: JSON lines, one per token, the last with generated_text and details
    const st = await s.post("/invocations", { inputs: inputs[0], stream: true, parameters: { max_new_tokens: 6, details: true, ignore_eos_token: true } });
    expect(st.headers.get("content-type")).toContain("jsonlines");
    const lines = jsonLines(await st.text());
    expect(lines.length).toBe(6);
    expect(lines.map((x) => x.token.text).join("")).toBe(o.generated_text);
    expect(lines.at(-1).generated_text).toBe(o.generated_text);
    expect(lines.at(-1).details.generated_tokens).toBe(6);
    expect(lines.slice(0, -1).every((x) => x.generated_text === undefined)).toBe(true);

    // messages form: OpenAI chat shape, via the template, adapter from the header
    const c = chatCase("es");
    const chat = await (await s.post("/invocations", { messages: CHAT, max_tokens: 12, temperature: 0, ignore_eos: true, return_token_ids: true }, { headers: { "X-Amzn-SageMaker-Adapter-Identifier": "es" } })).json() as any;
    expect(chat.object).toBe("chat.completion");
    expect(chat.model).toBe("es");
    expect(chat.prompt_token_ids).toEqual(c.prompt_ids);
    const n = comparable(c);
    expect(chat.choices[0].token_ids.slice(0, n)).toEqual(c.greedy_ids.slice(0, n));

    // the messages form takes LMI's parameters with LMI's meaning: max_new_tokens, greedy unless do_sample
    const viaParams = await (await s.post("/invocations", { messages: CHAT, parameters: { max_new_tokens: 5, ignore_eos_token: true, temperature: 3 }, return_token_ids: true },
      { headers: { "X-Amzn-SageMaker-Adapter-Identifier": "es" } })).json() as any;
    expect(viaParams.usage.completion_tokens).toBe(5);
    expect(viaParams.choices[0].token_ids).toEqual(chat.choices[0].token_ids.slice(0, 5));
    const both = await s.post("/invocations", { messages: CHAT, max_tokens: 3, parameters: { max_new_tokens: 5 } });
    expect(both.status).toBe(400);
    expect(((await both.json()) as any).error).toContain("parameters.max_new_tokens and max_tokens");
    const unknownParam = await s.post("/invocations", { messages: CHAT, parameters: { best_of: 2 } });
    expect(unknownParam.status).toBe(400);
    expect(((await unknownParam.json()) as any).error).toContain("parameters.best_of");
  }, 60_000);

  test("/ping, /health, /metrics and /v1/models", async () => {
    const ping = await fetch(`${s.url}/ping`);
    expect(ping.status).toBe(200);
    expect(await ping.json()).toEqual({});
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    const metrics = await fetch(`${s.url}/metrics`);
    expect(metrics.headers.get("content-type")).toContain("text/plain; version=0.0.4");
    expect(await metrics.text()).toContain("lora_serve_generation_tokens_total{");
    const models = await (await fetch(`${s.url}/v1/models`)).json() as any;
    expect(models.object).toBe("list");
    const byId = new Map(models.data.map((m: any) => [m.id, m]));
    expect([...byId.keys()].sort()).toEqual([MODEL, "dora", "es", "fr", "rp", "rs", "ru"].sort());
    expect((byId.get(MODEL) as any).parent).toBeNull();
    for (const a of ["dora", "es", "fr", "rp", "rs", "ru"]) {
      const m = byId.get(a) as any;
      expect(m).toMatchObject({ object: "model", owned_by: "lora-serve", parent: MODEL });
      expect(m.root).toEndWith(`/adapters/${a}`);
    }
  });
});
