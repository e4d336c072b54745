// POST /v1/completions (OpenAI legacy completions, with vLLM's extra fields).
// A list of several prompts is served as a batch: one choice per prompt, `index` = its position.
import type { EngineService, StreamEvent } from "../engine/engine-service.ts";
import { MAX_TOP_LOGPROBS } from "../engine/sampling.ts";
import { IncrementalDetokenizer } from "../tokenizer/detokenizer.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { badRequest } from "./errors.ts";
import { Fields } from "./fields.ts";
import { collectAll, nowSeconds, promptUsage, requestId, startChoices, tokenString, vllmPromptLogprobs, type Started } from "./generation.ts";
import type { PromptTokenLogprob } from "../engine/sequence.ts";
import { HARMLESS_FIELDS, readCommon, resolveModel, samplingFor } from "./openai.ts";
import { constrained, readStructuredOutput } from "./structured-output.ts";
import { checkPromptBytes, encodePrompt } from "./prompt-text.ts";
import type { RouteContext } from "./route.ts";
import { streamResponse } from "./stream.ts";

const DEFAULT_MAX_TOKENS = 16; // OpenAI's

interface Prompt {
  ids: number[];
  /** As given, for echo; undefined for token ids (decoded when echoed). */
  text?: string;
}

const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "number" && Number.isInteger(x));

/** The prompts as given, their sizes checked; texts are tokenized once every other field has been read. */
function readPrompts(f: Fields, service: EngineService): (string | number[])[] {
  let v = f.raw("prompt");
  const fail = (): never => {
    throw badRequest("prompt must be a string, a list of token ids, or a list of those", "prompt");
  };
  if (v === undefined) throw badRequest("prompt is required", "prompt");
  if (typeof v === "string") v = [v];
  if (!Array.isArray(v) || v.length === 0) return fail();
  if (isIds(v)) return [v];
  for (const p of v) if (typeof p === "string") checkPromptBytes(service, Buffer.byteLength(p), "prompt");
  return v.map((p) => (typeof p === "string" || isIds(p) ? p : fail()));
}

function encodePrompts(service: EngineService, given: (string | number[])[]): Promise<Prompt[]> {
  return Promise.all(given.map(async (p) => (typeof p === "string" ? { ids: await encodePrompt(service, p, "prompt"), text: p } : { ids: p })));
}

interface Logprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

const emptyLogprobs = (): Logprobs => ({ tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] });

/** OpenAI's top_logprobs entry: the alternatives by text, the token itself always among them. */
function topOf(tokenizer: TextTokenizer, e: PromptTokenLogprob): Record<string, number> {
  const top: Record<string, number> = {};
  for (const t of e.top) top[tokenString(tokenizer, t.id)] ??= t.logprob;
  top[tokenString(tokenizer, e.id)] ??= e.logprob;
  return top;
}

/** The prompt's tokens for echo: text offsets, and each token's log-probability given those before it (none for the first). */
function promptLogprobs(tokenizer: TextTokenizer, ids: number[], entries: (PromptTokenLogprob | null)[] | null): Logprobs {
  const out = emptyLogprobs();
  const detok = new IncrementalDetokenizer(tokenizer, { skipSpecialTokens: true });
  for (const [i, id] of ids.entries()) {
    const e = entries?.[i] ?? null;
    out.tokens.push(tokenString(tokenizer, id));
    out.token_logprobs.push(e?.logprob ?? null);
    out.top_logprobs.push(e ? topOf(tokenizer, e) : null);
    out.text_offset.push(detok.text.length);
    detok.push(id);
  }
  return out;
}

function addToken(out: Logprobs, tokenizer: TextTokenizer, e: StreamEvent, offset: number): void {
  const token = tokenString(tokenizer, e.token.id);
  const top: Record<string, number> = {};
  for (const t of e.token.topLogprobs) {
    const s = tokenString(tokenizer, t.id);
    if (!(s in top)) top[s] = t.logprob;
  }
  if (!(token in top)) top[token] = e.token.logprob; // OpenAI: the sampled token is always listed
  out.tokens.push(token);
  out.token_logprobs.push(e.token.logprob);
  out.top_logprobs.push(top);
  out.text_offset.push(offset);
}

export async function completions(ctx: RouteContext): Promise<Response> {
  const f = new Fields(ctx.body);
  const { service, adapter, name } = await resolveModel(ctx, f);
  const tokenizer = service.model.tokenizer;
  const given = readPrompts(f, service);
  const common = readCommon(f);
  const so = readStructuredOutput(f);
  f.unsupported("suffix", (v) => v === "");
  const asked = f.int("max_tokens") ?? DEFAULT_MAX_TOKENS;
  const logprobs = f.int("logprobs", 0);
  if (logprobs !== undefined && logprobs > MAX_TOP_LOGPROBS) throw badRequest(`logprobs must be <= ${MAX_TOP_LOGPROBS}, got ${logprobs}`, "logprobs");
  const echo = f.bool("echo") ?? false;
  // max_tokens 0 with echo scores the prompt alone: the token the prefill step samples is dropped
  const scoreOnly = asked === 0 && echo;
  const maxTokens = scoreOnly ? 1 : asked;
  // vLLM's prompt_logprobs; echo with logprobs scores the echoed prompt too, as OpenAI's API did
  const promptLp = f.int("prompt_logprobs", 0);
  if (promptLp !== undefined && promptLp > MAX_TOP_LOGPROBS) throw badRequest(`prompt_logprobs must be <= ${MAX_TOP_LOGPROBS}, got ${promptLp}`, "prompt_logprobs");
  const scored = Math.max(promptLp ?? -1, echo && logprobs !== undefined ? logprobs : -1);
  f.rejectUnread(HARMLESS_FIELDS);
  const params = await constrained(service, { ...samplingFor(service, common, maxTokens, logprobs ?? 0), ...(scored >= 0 ? { promptLogprobs: scored } : {}) }, so);
  const prompts = await encodePrompts(service, given);
  const run = await startChoices(service, prompts.map((p, i) => ({
    id: prompts.length > 1 ? `${ctx.requestId}-${i}` : ctx.requestId, promptIds: p.ids, adapter, params: { ...params }, stop: common.stop, signal: ctx.request.signal,
  })), common.n);
  const started = scoreOnly ? run.map(withoutTokens) : run;
  // choice k answers prompt k / n (OpenAI's index order for several prompts with n > 1)
  const promptOf = (k: number) => prompts[Math.floor(k / common.n)];
  const echoText = (k: number) => (echo ? promptOf(k).text ?? tokenizer.decode(promptOf(k).ids) : "");
  // the prompt is scored by its first choice (generation.ts startChoices)
  const scoredBy = (k: number) => started[k - (k % common.n)].promptLogprobs;
  const echoLogprobs = (k: number) => (echo ? promptLogprobs(tokenizer, promptOf(k).ids, scoredBy(k)) : emptyLogprobs());
  const promptLogprobsOf = (k: number) => (promptLp !== undefined ? { prompt_logprobs: vllmPromptLogprobs(tokenizer, scoredBy(k) ?? []) } : {});
  const base = { id: requestId("cmpl"), object: "text_completion", created: nowSeconds(), model: name };
  const opts = { service, started, common, logprobs, echoText, echoLogprobs, promptLogprobsOf, base, promptOf };
  return common.stream ? streamCompletions(ctx, opts) : respond(opts);
}

/** The same request with none of its tokens shown (they are still read to the end). */
function withoutTokens(s: Started): Started {
  return { ...s, events: (async function* () { for await (const _ of s.events); })() };
}

interface Opts {
  service: EngineService;
  started: Started[];
  promptOf: (choice: number) => Prompt;
  common: ReturnType<typeof readCommon>;
  logprobs: number | undefined;
  echoText: (i: number) => string;
  echoLogprobs: (i: number) => Logprobs;
  /** vLLM's prompt_logprobs field of choice i, where asked. */
  promptLogprobsOf: (i: number) => Record<string, unknown>;
  base: { id: string; object: string; created: number; model: string };
}

async function respond(o: Opts): Promise<Response> {
  const tokenizer = o.service.model.tokenizer;
  const results = await collectAll(o.started);
  const choices = results.map((r, i) => {
    const prefix = o.echoText(i);
    let lp: Logprobs | null = null;
    if (o.logprobs !== undefined) {
      lp = o.echoLogprobs(i);
      let offset = prefix.length;
      for (const e of r.events) {
        addToken(lp, tokenizer, e, offset);
        offset += e.text.length;
      }
    }
    return {
      index: i, text: prefix + r.text, logprobs: lp, finish_reason: r.finishReason, stop_reason: r.stopReason, ...o.promptLogprobsOf(i),
      ...(o.common.returnTokenIds ? { prompt_token_ids: o.promptOf(i).ids, token_ids: r.events.map((e) => e.token.id) } : {}),
    };
  });
  const completionTokens = results.reduce((n, r) => n + r.events.length, 0);
  return Response.json({ ...o.base, choices, usage: promptUsage(o.started, o.common.n, completionTokens) });
}

function streamCompletions(ctx: RouteContext, o: Opts): Response {
  const tokenizer = o.service.model.tokenizer;
  const usageNull = o.common.includeUsage ? { usage: null } : {};
  return streamResponse({
    format: "openai", sse: true, log: ctx.log,
    cancel: () => o.started.forEach((s) => s.cancel()),
    pump: async (send) => {
      let completionTokens = 0;
      await Promise.all(o.started.map(async (s, i) => {
        let first = true;
        let offset = 0;
        for await (const e of s.events) {
          let text = e.text;
          let lp: Logprobs | null = null;
          if (first && o.echoText(i)) text = o.echoText(i) + text;
          if (o.logprobs !== undefined) {
            lp = first ? o.echoLogprobs(i) : emptyLogprobs();
            addToken(lp, tokenizer, e, offset + text.length - e.text.length);
          }
          offset += text.length;
          completionTokens++;
          send({
            ...o.base,
            choices: [{
              index: i, text, logprobs: lp, finish_reason: e.finishReason, stop_reason: e.finishReason === null ? null : e.stopReason ?? null,
              ...(first ? o.promptLogprobsOf(i) : {}),
              ...(o.common.returnTokenIds ? { token_ids: [e.token.id], ...(first ? { prompt_token_ids: s.promptIds } : {}) } : {}),
            }],
            ...usageNull,
          });
          first = false;
        }
        // a prompt scored alone (max_tokens 0): its echo is the whole answer
        if (first) {
          send({
            ...o.base,
            choices: [{
              index: i, text: o.echoText(i), logprobs: o.logprobs !== undefined ? o.echoLogprobs(i) : null, finish_reason: "length", stop_reason: null,
              ...o.promptLogprobsOf(i), ...(o.common.returnTokenIds ? { token_ids: [], prompt_token_ids: s.promptIds } : {}),
            }],
            ...usageNull,
          });
        }
      }));
      if (o.common.includeUsage) send({ ...o.base, choices: [], usage: promptUsage(o.started, o.common.n, completionTokens) });
    },
  });
}
