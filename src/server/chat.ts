// POST /v1/chat/completions (and the `messages` form of LMI's /invocations, which answers in
// the same shape but streams JSON lines).
import type { EngineService, StreamEvent } from "../engine/engine-service.ts";
import type { ChatMessage } from "../tokenizer/chat.ts";
import { MAX_TOP_LOGPROBS } from "../engine/sampling.ts";
import { tokenBytes } from "../tokenizer/token-text.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { badRequest, type ErrorFormat } from "./errors.ts";
import { Fields, isObject } from "./fields.ts";
import { collectAll, nowSeconds, promptUsage, requestId, startChoices, tokenString, vllmPromptLogprobs } from "./generation.ts";
import { HARMLESS_FIELDS, readCommon, resolveModel, samplingFor, type Resolved } from "./openai.ts";
import { constrained, readStructuredOutput } from "./structured-output.ts";
import { readToolChoice, toolAnswer } from "./tool-choice.ts";
import { streamChat } from "./chat-stream.ts";
import type { RouteContext } from "./route.ts";
import { checkPromptBytes, encodePrompt } from "./prompt-text.ts";

export function readMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw badRequest("messages must be a non-empty list of messages", "messages");
  return v.map((m, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m) || typeof m.role !== "string") throw badRequest(`${at} must be an object with a string role`, "messages");
    const c = m.content;
    let content: string;
    // only an assistant turn may come without content (OpenAI: a tool call); any other is a client error
    if ((c === undefined || c === null) && m.role !== "assistant") throw badRequest(`${at}.content is required for a ${m.role} message`, "messages");
    if (c === undefined || c === null) content = "";
    else if (typeof c === "string") content = c;
    else if (Array.isArray(c)) {
      content = c.map((part, j) => {
        if (!isObject(part) || part.type !== "text" || typeof part.text !== "string") {
          const type = isObject(part) ? JSON.stringify(part.type) : typeof part;
          throw badRequest(`${at}.content[${j}]: only text parts ({type: "text", text}) are supported, got ${type}`, "messages");
        }
        return part.text;
      }).join("\n");
    } else throw badRequest(`${at}.content must be a string or a list of text parts`, "messages");
    return { ...m, role: m.role, content };
  });
}

/** Without max_tokens: what is left of the context (and of the whole KV cache), as vLLM does. */
function defaultMaxTokens(service: EngineService, promptLen: number): number {
  const { numBlocks, blockSize } = service.model.runner.opts;
  return Math.max(1, Math.min(service.maxModelLen, numBlocks * blockSize) - promptLen);
}


function logprobEntry(tokenizer: TextTokenizer, e: StreamEvent) {
  const item = (id: number, logprob: number) => {
    return { token: tokenString(tokenizer, id), logprob, bytes: tokenBytes(tokenizer, id) };
  };
  return { ...item(e.token.id, e.token.logprob), top_logprobs: e.token.topLogprobs.map((t) => item(t.id, t.logprob)) };
}

export interface ChatOptions {
  /** Set by /invocations, where the adapter comes from `adapters` or a header rather than `model`. */
  resolved?: Resolved;
  format: ErrorFormat;
  /** Server-sent events (OpenAI) or JSON lines (LMI). */
  sse: boolean;
}

export async function chatCompletions(ctx: RouteContext, opts: ChatOptions = { format: "openai", sse: true }): Promise<Response> {
  const f = new Fields(ctx.body);
  const { service, adapter, name } = opts.resolved ?? (await resolveModel(ctx, f));
  const messages = readMessages(f.raw("messages"));
  const common = readCommon(f);
  const so = readStructuredOutput(f);
  const logprobs = f.bool("logprobs") ?? false;
  const topLogprobs = f.int("top_logprobs", 0);
  if (topLogprobs !== undefined && topLogprobs > 0 && !logprobs) throw badRequest("top_logprobs needs logprobs: true", "top_logprobs");
  const maxTokensField = f.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  const maxTokens = f.int(maxTokensField);
  f.unsupported("add_generation_prompt", (v) => v === true); // vLLM's: what this route always does
  const toolPlan = readToolChoice(f, ctx.toolCallParser);
  const forced = toolPlan.forced;
  if (forced && so) throw badRequest(`give one structured-output constraint, got ${so.field} and a forced tool_choice`, so.field);
  const promptLp = f.int("prompt_logprobs", 0); // vLLM's
  if (promptLp !== undefined && promptLp > MAX_TOP_LOGPROBS) throw badRequest(`prompt_logprobs must be <= ${MAX_TOP_LOGPROBS}, got ${promptLp}`, "prompt_logprobs");
  f.rejectUnread(HARMLESS_FIELDS);
  const { tokenizer, chat } = service.model;
  // the messages' own bytes first (rendering the template is work too), then the rendered prompt's
  checkPromptBytes(service, messages.reduce((n, m) => n + Buffer.byteLength(m.content), 0), "messages");
  const rendered = chat.render(messages, { addGenerationPrompt: true, extra: toolPlan.tools.length ? { tools: toolPlan.tools } : undefined });
  const promptIds = await encodePrompt(service, rendered, "messages", { addSpecialTokens: false });
  const params = await constrained(service, {
    ...samplingFor(service, common, maxTokens ?? defaultMaxTokens(service, promptIds.length), logprobs ? topLogprobs ?? 0 : 0),
    ...(promptLp !== undefined ? { promptLogprobs: promptLp } : {}),
  }, so ?? forced?.so);
  const started = await startChoices(service, [{ id: ctx.requestId, promptIds, adapter, params, stop: common.stop, signal: ctx.request.signal }], common.n);
  const base = { id: requestId("chatcmpl"), created: nowSeconds(), model: name };
  const scored = promptLp !== undefined ? { prompt_logprobs: vllmPromptLogprobs(tokenizer, started[0].promptLogprobs ?? []) } : {};
  const lp = (events: StreamEvent[]) => (logprobs ? { content: events.map((e) => logprobEntry(tokenizer, e)) } : null);

  if (!common.stream) {
    const results = await collectAll(started);
    return Response.json({
      ...base, object: "chat.completion",
      choices: results.map((r, index) => ({
        index, ...toolAnswer(toolPlan, r.text, r.finishReason), logprobs: lp(r.events), stop_reason: r.stopReason,
        ...(common.returnTokenIds ? { token_ids: r.events.map((e) => e.token.id) } : {}),
      })),
      usage: promptUsage(started, common.n, results.reduce((t, r) => t + r.events.length, 0)),
      ...scored,
      ...(common.returnTokenIds ? { prompt_token_ids: promptIds } : {}),
    });
  }
  return streamChat({
    ctx, format: opts.format, sse: opts.sse, started, chunk: { ...base, object: "chat.completion.chunk" }, toolPlan,
    includeUsage: common.includeUsage, returnTokenIds: common.returnTokenIds, promptIds, scored, n: common.n, lp,
  });
}
