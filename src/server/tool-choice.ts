// Tool calling where the choice is forced, as vLLM does it without a model-family parser:
// tool_choice {"type": "function", "function": {"name"}} constrains the output to that function's
// arguments (its `parameters` schema); tool_choice "required" to a list of one or more calls of the
// given functions. The tools reach the chat template as `tools`. "auto" (the default with tools)
// needs a parser for the model family's tool-call format (--tool-call-parser, tool-parsers.ts): without
// one it is refused.
import { badRequest } from "./errors.ts";
import { isObject, type Fields, type JsonObject } from "./fields.ts";
import type { StructuredOutput } from "./structured-output.ts";
import { parseToolCalls, type ToolParserName } from "./tool-parsers.ts";

export interface ToolPlan {
  /** The tools as given (for the chat template); empty where none. */
  tools: JsonObject[];
  /** The forced call's shape, or undefined (tool_choice "none": the model writes text). */
  forced?: { mode: "named" | "required"; so: StructuredOutput; name?: string };
  /** tool_choice "auto": the model decides, and this parser finds the calls in its text. */
  auto?: ToolParserName;
}

interface FunctionTool {
  name: string;
  parameters: JsonObject;
}

function readFunctions(raw: unknown): FunctionTool[] {
  if (!Array.isArray(raw) || raw.length === 0) throw badRequest("tools must be a non-empty list of tools", "tools");
  return raw.map((t, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t) || t.type !== "function" || !isObject(t.function)) throw badRequest(`${at} must be {"type": "function", "function": {...}}`, "tools");
    const fn = t.function;
    if (typeof fn.name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(fn.name)) throw badRequest(`${at}.function.name must be 1-64 letters, digits, _ or -`, "tools");
    if (fn.parameters !== undefined && !isObject(fn.parameters)) throw badRequest(`${at}.function.parameters must be a JSON schema object`, "tools");
    return { name: fn.name, parameters: (fn.parameters as JsonObject | undefined) ?? { type: "object", properties: {} } };
  });
}

/** `parser`: the server's --tool-call-parser, where --enable-auto-tool-choice is on. */
export function readToolChoice(f: Fields, parser?: ToolParserName): ToolPlan {
  const raw = f.raw("tools"), choice = f.raw("tool_choice"), parallel = f.bool("parallel_tool_calls") ?? true;
  if (raw === undefined) {
    if (choice !== undefined && choice !== "none") throw badRequest("tool_choice needs tools", "tool_choice");
    return { tools: [] };
  }
  const functions = readFunctions(raw), tools = raw as JsonObject[];
  if (choice === "none") return { tools };
  if (choice === undefined || choice === "auto") {
    if (parser) return { tools, auto: parser };
    throw badRequest('tool_choice "auto" needs a tool-call parser for the model family (start the server with --enable-auto-tool-choice --tool-call-parser hermes|llama3_json), or give tool_choice "required" or {"type": "function", "function": {"name": ...}}', "tool_choice");
  }
  if (choice === "required") {
    // one or more calls: [{"name": one of the functions, "parameters": its arguments}]
    const items = { anyOf: functions.map((fn) => ({ type: "object", properties: { name: { enum: [fn.name] }, parameters: fn.parameters }, required: ["name", "parameters"], additionalProperties: false })) };
    const schema = { type: "array", minItems: 1, ...(parallel ? {} : { maxItems: 1 }), items };
    return { tools, forced: { mode: "required", so: { spec: { kind: "json_schema", schema: JSON.stringify(schema) }, field: "tool_choice" } } };
  }
  const name = isObject(choice) && choice.type === "function" && isObject(choice.function) ? choice.function.name : undefined;
  if (typeof name !== "string") throw badRequest('tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}', "tool_choice");
  const fn = functions.find((x) => x.name === name);
  if (!fn) throw badRequest(`tool_choice names "${name}", which is not among the tools`, "tool_choice");
  return { tools, forced: { mode: "named", name, so: { spec: { kind: "json_schema", schema: JSON.stringify(fn.parameters) }, field: "tool_choice" } } };
}

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export const callId = () => `chatcmpl-tool-${crypto.randomUUID().replaceAll("-", "")}`;

/**
 * The calls in a forced output: the named function with the text as its arguments, or the list
 * "required" produced. Text cut short (finish_reason "length") is no call: it stays content.
 */
export function toolCallsOf(forced: NonNullable<ToolPlan["forced"]>, text: string): ToolCall[] | null {
  try {
    const value = JSON.parse(text);
    if (forced.mode === "named") return [{ id: callId(), type: "function", function: { name: forced.name!, arguments: JSON.stringify(value) } }];
    return (value as { name: string; parameters: unknown }[]).map((c) => ({ id: callId(), type: "function", function: { name: c.name, arguments: JSON.stringify(c.parameters) } }));
  } catch {
    return null;
  }
}

/**
 * A choice's message: text, or the calls it made: forced (finish_reason tool_calls for "required", as
 * OpenAI), or found by the auto parser (then content is the text before them, and finish_reason tool_calls).
 */
export function toolAnswer(plan: ToolPlan, text: string, finishReason: string | null) {
  if (plan.auto) {
    const parsed = parseToolCalls(plan.auto, text);
    if (parsed.calls.length === 0) return { message: { role: "assistant", content: text }, finish_reason: finishReason };
    const tool_calls: ToolCall[] = parsed.calls.map((c) => ({ id: callId(), type: "function", function: c }));
    return { message: { role: "assistant", content: parsed.content, tool_calls }, finish_reason: "tool_calls" };
  }
  const forced = plan.forced;
  const calls = forced ? toolCallsOf(forced, text) : null;
  if (!calls) return { message: { role: "assistant", content: text } as { role: string; content: string | null; tool_calls?: ToolCall[] }, finish_reason: finishReason };
  return { message: { role: "assistant", content: null, tool_calls: calls }, finish_reason: forced!.mode === "required" ? "tool_calls" : finishReason };
}
