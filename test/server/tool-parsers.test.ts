// The tool-call formats of the model families, as their chat templates teach them: whole outputs
// and the same outputs streamed in pieces (every split point), against the calls written here.
import { describe, expect, test } from "bun:test";
import { ToolCallStream, parseToolCalls, type ToolParserName } from "../../src/server/tool-parsers.ts";

const hermes = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>';
const llama = '{"name": "get_weather", "parameters": {"city": "Lima"}}; {"name": "get_time", "parameters": {"zone": "PET"}}';

describe("parseToolCalls", () => {
  test("hermes: the text before the calls is content; each block a call", () => {
    const p = parseToolCalls("hermes", hermes);
    expect(p.content).toBe("Let me check.");
    expect(p.calls).toEqual([{ name: "get_weather", arguments: '{"city":"Paris","days":2}' }, { name: "get_time", arguments: '{"zone":"CET"}' }]);
    expect(parseToolCalls("hermes", '<tool_call>{"name": "f", "arguments": {}}').calls).toEqual([{ name: "f", arguments: "{}" }]); // cut before </tool_call>
    expect(parseToolCalls("hermes", "plain answer")).toEqual({ content: "plain answer", calls: [] });
    expect(parseToolCalls("hermes", "<tool_call>{not json</tool_call>")).toEqual({ content: "<tool_call>{not json</tool_call>", calls: [] });
  });
  test("llama3_json: one or more objects joined by '; '; parameters or arguments; anything else is content", () => {
    expect(parseToolCalls("llama3_json", llama)).toEqual({ content: null, calls: [{ name: "get_weather", arguments: '{"city":"Lima"}' }, { name: "get_time", arguments: '{"zone":"PET"}' }] });
    expect(parseToolCalls("llama3_json", ' {"name": "f", "arguments": {"a": 1}}').calls).toEqual([{ name: "f", arguments: '{"a":1}' }]);
    expect(parseToolCalls("llama3_json", "The weather is fine.").calls).toEqual([]);
    // a "; " inside an argument string does not split the call
    expect(parseToolCalls("llama3_json", '{"name": "say", "parameters": {"text": "a}; {b"}}').calls).toEqual([{ name: "say", arguments: '{"text":"a}; {b"}' }]);
    expect(parseToolCalls("llama3_json", '{"no_name": 1}')).toEqual({ content: '{"no_name": 1}', calls: [] });
  });
});

describe("ToolCallStream: the same answers, streamed split at every point", () => {
  const cases: [ToolParserName, string][] = [["hermes", hermes], ["hermes", "no call here, just <tool text"], ["llama3_json", llama], ["llama3_json", "  plain text answer"]];
  for (const [parser, text] of cases) {
    test(`${parser}: ${JSON.stringify(text.slice(0, 30))}…`, () => {
      const whole = parseToolCalls(parser, text);
      for (let cut = 0; cut <= text.length; cut++) {
        const s = new ToolCallStream(parser);
        const streamed = s.push(text.slice(0, cut)) + s.push(text.slice(cut));
        const end = s.finish();
        expect(end.calls).toEqual(whole.calls);
        // the content that went out, and what came at the end, make the whole content (no call text leaks)
        expect((streamed + end.content).trim()).toBe((whole.content ?? "").trim());
      }
    });
  }
});
