// tool_choice "auto": the model decides whether to call a tool, in its family's own format, and the
// server finds the calls in the text (vLLM's --tool-call-parser). hermes: Hermes 2/3, Qwen 2.5 and
// later (<tool_call>{"name", "arguments"}</tool_call>, any number, after optional text); llama3_json:
// Llama 3.1+ (the answer is one or more {"name", "parameters"} objects joined by "; ").
export const TOOL_PARSERS = ["hermes", "llama3_json"] as const;
export type ToolParserName = (typeof TOOL_PARSERS)[number];

export interface ParsedCall {
  name: string;
  /** The arguments as a JSON text. */
  arguments: string;
}

export interface ParsedOutput {
  content: string | null;
  calls: ParsedCall[];
}

const OPEN = "<tool_call>";

function call(value: unknown): ParsedCall {
  const v = value as { name?: unknown; arguments?: unknown; parameters?: unknown };
  if (typeof v?.name !== "string") throw new Error("a tool call without a name");
  return { name: v.name, arguments: JSON.stringify(v.arguments ?? v.parameters ?? {}) };
}

/** The calls in a whole output; text that is not a well-formed call stays content (as vLLM). */
export function parseToolCalls(parser: ToolParserName, text: string): ParsedOutput {
  try {
    if (parser === "hermes") {
      const start = text.indexOf(OPEN);
      if (start < 0) return { content: text, calls: [] };
      const calls: ParsedCall[] = [];
      // each block closed, or the last one cut short at the end of the text
      for (const m of text.slice(start).matchAll(/<tool_call>([\s\S]*?)(?:<\/tool_call>|$)/g)) calls.push(call(JSON.parse(m[1])));
      const content = text.slice(0, start).trim();
      return { content: content || null, calls };
    }
    const body = text.trim();
    if (!body.startsWith("{")) return { content: text, calls: [] };
    return { content: null, calls: topLevelParts(body).map((part) => call(JSON.parse(part))) };
  } catch {
    return { content: text, calls: [] };
  }
}

// The text split at each ";" outside strings and brackets.
function topLevelParts(text: string): string[] {
  const parts: string[] = [];
  let depth = 0, inString = false, from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === ";" && depth === 0) {
      parts.push(text.slice(from, i));
      from = i + 1;
    }
  }
  parts.push(text.slice(from));
  return parts;
}

/**
 * Streaming "auto": text goes out as it comes until it may be a call (hermes: "<tool_call>" seen,
 * or a prefix of it held back; llama3_json: the answer opens with "{"); from there it is held, and
 * the calls (or the held text, if it was no call) go out at the end.
 */
export class ToolCallStream {
  private text = "";
  private sent = 0;
  private holding = false;

  constructor(private readonly parser: ToolParserName) {}

  /** Content that can go out now. */
  push(piece: string): string {
    this.text += piece;
    if (this.holding) return "";
    if (this.parser === "llama3_json") {
      const lead = this.text.trimStart();
      if (lead.startsWith("{")) this.holding = true;
      if (lead.length === 0 || this.holding) return ""; // undecided (only spaces so far) or a call
      return this.release(this.text.length);
    }
    const at = this.text.indexOf(OPEN, Math.max(0, this.sent - OPEN.length));
    if (at >= 0) {
      this.holding = true;
      return this.release(at);
    }
    // hold back a tail that could be the start of "<tool_call>"
    let keep = 0;
    for (let k = Math.min(OPEN.length - 1, this.text.length); k > 0; k--) if (OPEN.startsWith(this.text.slice(-k))) { keep = k; break; }
    return this.release(this.text.length - keep);
  }

  /** At the end: the rest of the content and the calls. */
  finish(): { content: string; calls: ParsedCall[] } {
    const rest = this.text.slice(this.sent);
    if (!this.holding) return { content: rest, calls: [] };
    const parsed = parseToolCalls(this.parser, this.text);
    if (parsed.calls.length === 0) return { content: rest, calls: [] };
    // the content before the calls went out already, except what was held back
    const before = this.parser === "hermes" ? this.text.slice(this.sent, this.text.indexOf(OPEN)) : "";
    return { content: before, calls: parsed.calls };
  }

  private release(upTo: number): string {
    const out = this.text.slice(this.sent, upTo);
    this.sent = Math.max(this.sent, upTo);
    return out;
  }
}
