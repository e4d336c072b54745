// Chat completions streamed (SSE, or LMI's JSON lines): a role chunk per choice, then its text as it
// comes; under a forced tool_choice the calls in one delta at the end; under "auto" the text until it
// may be a call (tool-parsers.ts), then the calls (or the held text) with the finish.
import type { StreamEvent } from "../engine/engine-service.ts";
import type { ErrorFormat } from "./errors.ts";
import { promptUsage, type Started } from "./generation.ts";
import type { RouteContext } from "./route.ts";
import { streamResponse } from "./stream.ts";
import { callId, toolAnswer, type ToolPlan } from "./tool-choice.ts";
import { ToolCallStream } from "./tool-parsers.ts";

export interface ChatStream {
  ctx: RouteContext;
  format: ErrorFormat;
  sse: boolean;
  started: Started[];
  /** The fields every chunk carries (id, created, model, object). */
  chunk: Record<string, unknown>;
  toolPlan: ToolPlan;
  includeUsage: boolean;
  returnTokenIds: boolean;
  promptIds: number[];
  /** vLLM's prompt_logprobs, on the first choice's first chunk. */
  scored: Record<string, unknown>;
  /** Choices per prompt. */
  n: number;
  lp: (events: StreamEvent[]) => unknown;
}

type Send = (body: unknown) => void;

export function streamChat(o: ChatStream): Response {
  const usageNull = o.includeUsage ? { usage: null } : {};
  // one chunk of choice `index`
  const emit = (send: Send, index: number, choice: Record<string, unknown>) => send({ ...o.chunk, choices: [{ index, logprobs: null, ...choice }], ...usageNull });
  return streamResponse({
    format: o.format, sse: o.sse, log: o.ctx.log, cancel: () => o.started.forEach((s) => s.cancel()),
    pump: async (send) => {
      let n = 0;
      const counted = async function* (events: AsyncIterable<StreamEvent>) {
        for await (const e of events) {
          n++;
          yield e;
        }
      };
      await Promise.all(o.started.map(async (s, index) => {
        send({
          ...o.chunk, choices: [{ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], ...usageNull,
          ...(o.returnTokenIds && index === 0 ? { prompt_token_ids: o.promptIds } : {}),
          ...(index === 0 ? o.scored : {}),
        });
        const out = (choice: Record<string, unknown>) => emit(send, index, choice);
        const events = counted(s.events);
        if (o.toolPlan.forced) await forcedChoice(o.toolPlan, events, out);
        else if (o.toolPlan.auto) await autoChoice(new ToolCallStream(o.toolPlan.auto), events, out);
        else {
          for await (const e of events) {
            out({
              delta: { content: e.text }, logprobs: o.lp([e]), finish_reason: e.finishReason,
              ...(e.finishReason !== null ? { stop_reason: e.stopReason ?? null } : {}),
              ...(o.returnTokenIds ? { token_ids: [e.token.id] } : {}),
            });
          }
        }
      }));
      if (o.includeUsage) send({ ...o.chunk, choices: [], usage: promptUsage(o.started, o.n, n) });
    },
  });
}

// Forced: the calls are whole only at the end, so they go in one delta with the finish.
async function forcedChoice(plan: ToolPlan, events: AsyncIterable<StreamEvent>, out: (choice: Record<string, unknown>) => void): Promise<void> {
  let text = "", last: StreamEvent | undefined;
  for await (const e of events) [text, last] = [text + e.text, e];
  const { message, finish_reason } = toolAnswer(plan, text, last?.finishReason ?? null);
  const delta = message.tool_calls ? { tool_calls: message.tool_calls.map((c, i) => ({ index: i, ...c })) } : { content: message.content };
  out({ delta, finish_reason, stop_reason: last?.stopReason ?? null });
}

// Auto: text goes out until it may be a call; the calls (or the text held back) come with the finish.
async function autoChoice(auto: ToolCallStream, events: AsyncIterable<StreamEvent>, out: (choice: Record<string, unknown>) => void): Promise<void> {
  for await (const e of events) {
    const content = auto.push(e.text);
    if (e.finishReason === null) {
      if (content) out({ delta: { content }, finish_reason: null });
      continue;
    }
    const end = auto.finish(), text = content + end.content;
    const calls = end.calls.map((c, i) => ({ index: i, id: callId(), type: "function", function: c }));
    out({
      delta: { ...(text ? { content: text } : {}), ...(calls.length ? { tool_calls: calls } : {}) },
      finish_reason: calls.length ? "tool_calls" : e.finishReason, stop_reason: e.stopReason ?? null,
    });
  }
}
