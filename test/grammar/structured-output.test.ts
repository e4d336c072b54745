// Structured output through the server: 200 requests over the demo adapters (and the base), each
// with a random JSON schema at temperature 1, must give text that parses and validates against its
// schema (ajv); guided_regex / guided_choice outputs must match; unconstrained seeded requests in the
// same batches must equal their runs alone; bad constraints are 400s naming their field.
import { describe, expect, test } from "bun:test";
import Ajv from "ajv";
import { MODEL, withFixtureServer } from "../server/server-fixture.ts";
import { randomSchema, seededRandom } from "../../src/bench/random-schema.ts";

const fx = withFixtureServer();
const MODELS = [MODEL, "es", "fr"];
const completion = async (body: Record<string, unknown>) => {
  const r = await fx.s.post("/v1/completions", { prompt: "Give me data:", max_tokens: 200, temperature: 1, ...body });
  const j = (await r.json()) as any;
  if (r.status !== 200) throw new Error(`${r.status}: ${JSON.stringify(j)}`);
  return j.choices[0] as { text: string; finish_reason: string };
};

describe("structured output, mixed with free requests in the same batches", () => {
  test("200 random JSON schemas at temperature 1: every output parses and validates; free rows equal their solo runs", async () => {
    const rand = seededRandom(20261207), ajv = new Ajv({ strict: false });
    const free = Array.from({ length: 12 }, (_, i) => ({ model: MODELS[i % 3], prompt: `Story ${i}:`, max_tokens: 24, seed: 100 + i, ignore_eos: true }));
    const solo: string[] = [];
    for (const body of free) solo.push((await completion(body)).text);
    const schemas = Array.from({ length: 200 }, () => randomSchema(rand));
    const failures: string[] = [];
    for (let wave = 0; wave < 4; wave++) {
      const constrainedRuns = schemas.slice(wave * 50, (wave + 1) * 50).map(async (schema, i) => {
        const format = i % 2 === 0
          ? { response_format: { type: "json_schema", json_schema: { name: "t", schema } } }
          : { guided_json: schema };
        const c = await completion({ model: MODELS[i % 3], seed: wave * 50 + i, ...format });
        let valid = false;
        try {
          valid = ajv.validate(schema, JSON.parse(c.text)) as boolean;
        } catch {}
        if (!valid || c.finish_reason !== "stop") failures.push(`${c.finish_reason}: ${JSON.stringify(schema)} -> ${JSON.stringify(c.text)}`);
      });
      const freeRuns = free.map((body) => completion(body).then((c) => c.text));
      await Promise.all(constrainedRuns);
      expect(await Promise.all(freeRuns)).toEqual(solo);
    }
    expect(failures).toEqual([]);
    // the schemas cover what they should: nesting, arrays, enums, patterns, required fields
    const text = JSON.stringify(schemas);
    for (const feature of ['"type":"array"', '"enum"', '"pattern"', '"required"', '"maxLength"', '"minimum"']) expect(text).toContain(feature);
    const nested = (s: any): boolean => Object.values(s.properties ?? {}).some((p: any) => p.type === "object" || nested(p) || (p.items && nested(p.items)));
    expect(schemas.filter(nested).length).toBeGreaterThan(20);
  }, 600_000);

  test("guided_regex and guided_choice (and structured_outputs) outputs match; json_object gives an object", async () => {
    const runs = await Promise.all(Array.from({ length: 12 }, async (_, i) => {
      const model = MODELS[i % 3];
      const regex = await completion({ model, seed: i, guided_regex: "(yes|no)-[0-9]{2,4}" });
      const choice = await completion({ model, seed: i, guided_choice: ["positive", "negative", "a \"quoted\" one"] });
      const so = await completion({ model, seed: i, structured_outputs: { regex: "[A-Z]{3}" } });
      const obj = await completion({ model, seed: i, max_tokens: 400, response_format: { type: "json_object" } });
      return { regex, choice, so, obj };
    }));
    for (const { regex, choice, so, obj } of runs) {
      expect(regex.text).toMatch(/^(yes|no)-[0-9]{2,4}$/);
      expect(["positive", "negative", 'a "quoted" one']).toContain(choice.text);
      expect(so.text).toMatch(/^[A-Z]{3}$/);
      // free-form JSON from a random-weight model may run past max_tokens; ended ones must be objects
      if (obj.finish_reason === "stop") expect(typeof JSON.parse(obj.text)).toBe("object");
    }
    expect(new Set(runs.map((r) => r.choice.text)).size).toBeGreaterThan(1); // sampled, not stuck on one
  }, 300_000);

  test("chat and LMI take the same constraints", async () => {
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false };
    const chat = await fx.s.post("/v1/chat/completions", { model: "es", messages: [{ role: "user", content: "hi" }], max_tokens: 50, response_format: { type: "json_schema", json_schema: { name: "x", schema } } });
    expect(JSON.parse(((await chat.json()) as any).choices[0].message.content)).toHaveProperty("ok");
    const lmi = await fx.s.post("/invocations", { inputs: "hi", adapters: "fr", parameters: { max_new_tokens: 50, guided_choice: ["left", "right"] } });
    expect(["left", "right"]).toContain(((await lmi.json()) as any).generated_text);
    const lmiChat = await fx.s.post("/invocations", { messages: [{ role: "user", content: "hi" }], adapters: "fr", parameters: { max_new_tokens: 20, guided_regex: "[0-9]{4}" } });
    expect(((await lmiChat.json()) as any).choices[0].message.content).toMatch(/^[0-9]{4}$/);
  }, 120_000);
});

test("/metrics counts the grammars compiled and the mask time (the waits beside it)", async () => {
  const text = await (await fetch(`${fx.s.url}/metrics`)).text();
  const value = (name: string) => Number(text.match(new RegExp(`^${name}\\{model="${MODEL}"\\} (\\S+)$`, "m"))?.[1] ?? NaN);
  expect(value("lora_serve_grammar_compiles_total")).toBeGreaterThan(150); // ~200 random schemas (a few may repeat), regexes, choices
  expect(value("lora_serve_grammar_mask_seconds_total")).toBeGreaterThan(0);
  expect(value("lora_serve_grammar_mask_wait_seconds_total")).toBeLessThan(value("lora_serve_grammar_mask_seconds_total") + 1);
  expect(value("lora_serve_grammar_deferred_steps_total")).toBeGreaterThanOrEqual(0);
});

describe("constraints the server refuses, naming the field", () => {
  const refused = async (body: Record<string, unknown>, param: string, path = "/v1/completions") => {
    const r = await fx.s.post(path, { model: "es", prompt: "x", max_tokens: 5, ...body });
    const e = ((await r.json()) as any).error;
    expect(`${r.status} ${e.param}`).toBe(`400 ${param}`);
    return e.message as string;
  };
  test("a schema the grammar engine cannot compile, a bad regex, two constraints, ignore_eos, min_tokens, tools", async () => {
    expect(await refused({ guided_json: { type: "object", properties: { a: { $ref: "#/nope" } } } }, "guided_json")).toContain("nope");
    await refused({ guided_json: "not json" }, "guided_json");
    await refused({ guided_regex: "(unclosed" }, "guided_regex");
    await refused({ guided_choice: [] }, "guided_choice");
    await refused({ guided_regex: "a", guided_choice: ["b"] }, "guided_choice");
    await refused({ response_format: { type: "xml" } }, "response_format.type");
    await refused({ guided_regex: "a+", ignore_eos: true }, "ignore_eos");
    await refused({ guided_regex: "a+", min_tokens: 2 }, "min_tokens");
    await refused({ guided_regex: "a+", guided_decoding_backend: "outlines" }, "guided_decoding_backend");
    await refused({ messages: [{ role: "user", content: "x" }], tools: [{ type: "function", function: { name: "f" } }] }, "tool_choice", "/v1/chat/completions");
    // and the server goes on serving constrained requests
    expect((await completion({ model: "es", guided_choice: ["still", "here"] })).text).toMatch(/^(still|here)$/);
  }, 120_000);
});
