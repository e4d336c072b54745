// Forced tool calls (vLLM's named and "required" tool_choice): the output is constrained to the
// function's arguments (or to a list of calls), and comes back as message.tool_calls whose
// arguments validate against the tool's parameters; "auto" is refused (no tool-call parser).
import { describe, expect, test } from "bun:test";
import Ajv from "ajv";
import { sseEvents, withFixtureServer } from "./server-fixture.ts";

const fx = withFixtureServer();
const ajv = new Ajv({ strict: false });
const weather = {
  type: "object", properties: { city: { enum: ["Paris", "Lima", "Oslo"] }, unit: { enum: ["c", "f"] }, days: { type: "integer", minimum: 1, maximum: 7 } },
  required: ["city", "days"], additionalProperties: false,
};
const time = { type: "object", properties: { zone: { type: "string", pattern: "^[A-Z]{3}$" } }, required: ["zone"], additionalProperties: false };
const tools = [
  { type: "function", function: { name: "get_weather", description: "Forecast", parameters: weather } },
  { type: "function", function: { name: "get_time", parameters: time } },
];
const chat = (extra: Record<string, unknown>) => fx.s.post("/v1/chat/completions", {
  model: "es", messages: [{ role: "user", content: "Weather in Paris?" }], max_tokens: 120, temperature: 1, tools, ...extra,
});

describe("forced tool_choice", () => {
  test("a named function: one call of it, its arguments valid against its parameters, for several seeds", async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const r = await chat({ seed, tool_choice: { type: "function", function: { name: "get_weather" } } });
      const c = ((await r.json()) as any).choices[0];
      expect(c.message.content).toBeNull();
      expect(c.message.tool_calls).toHaveLength(1);
      const call = c.message.tool_calls[0];
      expect(call.type).toBe("function");
      expect(call.id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
      expect(call.function.name).toBe("get_weather");
      expect(ajv.validate(weather, JSON.parse(call.function.arguments))).toBe(true);
      expect(c.finish_reason).toBe("stop");
    }
  });

  test("required: one or more calls of the given functions, each valid against its own parameters; finish_reason tool_calls", async () => {
    const names = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const c = ((await (await chat({ seed, tool_choice: "required", max_tokens: 300 })).json()) as any).choices[0];
      if (c.finish_reason === "length") continue; // a random-weight model may list calls past max_tokens
      expect(c.finish_reason).toBe("tool_calls");
      expect(c.message.tool_calls.length).toBeGreaterThan(0);
      for (const call of c.message.tool_calls) {
        names.add(call.function.name);
        expect(ajv.validate(call.function.name === "get_weather" ? weather : time, JSON.parse(call.function.arguments))).toBe(true);
      }
    }
    expect(names.size).toBeGreaterThan(0);
    // parallel_tool_calls false: exactly one call
    const one = ((await (await chat({ seed: 9, tool_choice: "required", parallel_tool_calls: false })).json()) as any).choices[0];
    if (one.finish_reason !== "length") expect(one.message.tool_calls).toHaveLength(1);
  });

  test("streamed: the role, then the calls in one delta with finish_reason, then [DONE]", async () => {
    const r = await chat({ seed: 3, stream: true, tool_choice: { type: "function", function: { name: "get_time" } } });
    const events = sseEvents(await r.text());
    const deltas = events.filter((e) => e.choices?.length).map((e) => e.choices[0]);
    expect(deltas[0].delta.role).toBe("assistant");
    const last = deltas[deltas.length - 1];
    expect(last.finish_reason).toBe("stop");
    expect(last.delta.tool_calls[0].index).toBe(0);
    expect(last.delta.tool_calls[0].function.name).toBe("get_time");
    expect(ajv.validate(time, JSON.parse(last.delta.tool_calls[0].function.arguments))).toBe(true);
  });

  test("refused, naming the field: auto (the default), a name not among the tools, tool_choice without tools, a malformed tool, with response_format", async () => {
    const param = async (r: Response) => `${r.status} ${((await r.json()) as any).error.param}`;
    expect(await param(await chat({}))).toBe("400 tool_choice");
    expect(await param(await chat({ tool_choice: "auto" }))).toBe("400 tool_choice");
    expect(await param(await chat({ tool_choice: { type: "function", function: { name: "nope" } } }))).toBe("400 tool_choice");
    expect(await param(await chat({ tools: undefined, tool_choice: "required" }))).toBe("400 tool_choice");
    expect(await param(await chat({ tools: [{ type: "function", function: { name: "bad name!" } }], tool_choice: "required" }))).toBe("400 tools");
    expect(await param(await chat({ tool_choice: "required", response_format: { type: "json_object" } }))).toBe("400 response_format");
    // tool_choice none: the tools go to the template, the model writes text
    const none = ((await (await chat({ tool_choice: "none", max_tokens: 5 })).json()) as any).choices[0];
    expect(typeof none.message.content).toBe("string");
    expect(none.message.tool_calls).toBeUndefined();
  });
});

describe("tool_choice auto with --tool-call-parser llama3_json", () => {
  const auto = withFixtureServer({ toolCallParser: "llama3_json" });
  // a random-weight model never writes a call by itself: a schema makes it write one, the parser must find it
  const callSchema = { type: "object", properties: { name: { enum: ["get_time"] }, parameters: time }, required: ["name", "parameters"], additionalProperties: false };
  const post = (extra: Record<string, unknown>) => auto.s.post("/v1/chat/completions", {
    model: "es", messages: [{ role: "user", content: "Time?" }], max_tokens: 80, temperature: 1, seed: 4, tools, ...extra,
  });

  test("an answer in the family's call format comes back as tool_calls (finish_reason tool_calls); plain text as content", async () => {
    const c = ((await (await post({ guided_json: callSchema })).json()) as any).choices[0];
    expect(c.finish_reason).toBe("tool_calls");
    expect(c.message.content).toBeNull();
    expect(c.message.tool_calls[0].function.name).toBe("get_time");
    expect(ajv.validate(time, JSON.parse(c.message.tool_calls[0].function.arguments))).toBe(true);
    const plain = ((await (await post({ max_tokens: 6 })).json()) as any).choices[0];
    expect(plain.message.tool_calls).toBeUndefined();
    expect(typeof plain.message.content).toBe("string");
  });

  test("streamed: the same call in the last delta; plain text streams as content", async () => {
    const whole = ((await (await post({ guided_json: callSchema })).json()) as any).choices[0].message.tool_calls[0].function;
    const events = sseEvents(await (await post({ guided_json: callSchema, stream: true })).text()).filter((e) => e.choices?.length);
    const last = events[events.length - 1].choices[0];
    expect(last.finish_reason).toBe("tool_calls");
    expect(last.delta.tool_calls[0].function).toEqual(whole);
    expect(events.slice(1, -1).every((e) => !e.choices[0].delta.content)).toBe(true); // nothing of the call leaked as content
    const plain = sseEvents(await (await post({ max_tokens: 6, stream: true })).text()).filter((e) => e.choices?.length);
    expect(plain.slice(1).map((e) => e.choices[0].delta.content ?? "").join("").length).toBeGreaterThan(0);
  });
});
