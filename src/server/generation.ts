// Submitting requests to a service and reading their token streams, shared by every route.
import type { EngineService, GenerationRequest, StreamEvent } from "../engine/engine-service.ts";
import type { PromptTokenLogprob } from "../engine/sequence.ts";
import { tokenText } from "../tokenizer/token-text.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { usage } from "./openai.ts";

export interface Started {
  promptIds: number[];
  promptTokens: number;
  /** Of those, the ones found in the prefix cache. */
  cachedTokens: number;
  /** Where asked: each prompt token's log-probability (null for the first). */
  promptLogprobs: (PromptTokenLogprob | null)[] | null;
  /** Every event, the first one included; ending the loop early cancels the request. */
  events: AsyncGenerator<StreamEvent>;
  cancel(): void;
}

/**
 * Submits all requests at once (so they share batches), then waits for each one's first event:
 * an adapter that fails to load throws there, before any response header is sent. All or nothing:
 * on any failure every request is cancelled and the first error is thrown.
 */
export async function startAll(service: EngineService, reqs: GenerationRequest[]): Promise<Started[]> {
  const handles: ReturnType<EngineService["submit"]>[] = [];
  try {
    for (const r of reqs) handles.push(service.submit(r));
  } catch (e) {
    handles.forEach((h) => h.cancel());
    throw e;
  }
  const iterators = handles.map((h) => h.events[Symbol.asyncIterator]());
  const firsts = await Promise.allSettled(iterators.map((it) => it.next()));
  const failed = firsts.find((f) => f.status === "rejected");
  if (failed) {
    handles.forEach((h) => h.cancel());
    throw (failed as PromiseRejectedResult).reason;
  }
  return handles.map((h, i) => {
    const first = (firsts[i] as PromiseFulfilledResult<IteratorResult<StreamEvent>>).value;
    return { promptIds: reqs[i].promptIds, promptTokens: h.promptTokens, cachedTokens: first.done ? 0 : first.value.cachedTokens ?? 0, promptLogprobs: first.done ? null : first.value.promptLogprobs ?? null, events: resume(first, iterators[i], () => h.cancel()), cancel: () => h.cancel() };
  });
}

/**
 * `n` choices per request, choice j sampling with seed + j. Each request's first choice starts
 * alone; the others are submitted once it has its first token, when its prompt's full KV blocks are
 * in the prefix cache, so the prompt is computed once (all but its last partial block). Returned in
 * order: request 0's choices, then request 1's.
 */
export async function startChoices(service: EngineService, reqs: GenerationRequest[], n: number): Promise<Started[]> {
  const leaders = await startAll(service, reqs);
  if (n === 1) return leaders;
  const followers = reqs.flatMap((r) => Array.from({ length: n - 1 }, (_, j) => ({
    // the first choice alone scores the prompt; the others reuse its cached blocks
    ...r, id: r.id === undefined ? undefined : `${r.id}-${j + 1}`, params: { ...r.params, seed: r.params.seed + BigInt(j + 1), promptLogprobs: undefined },
  })));
  let rest: Started[];
  try {
    rest = await startAll(service, followers);
  } catch (e) {
    leaders.forEach((s) => s.cancel());
    throw e;
  }
  return reqs.flatMap((_, i) => [leaders[i], ...rest.slice(i * (n - 1), (i + 1) * (n - 1))]);
}

/** Usage over choices: each prompt counted once (with its first choice's cached tokens), every choice's tokens. */
export function promptUsage(started: Started[], n: number, completionTokens: number) {
  const firsts = started.filter((_, k) => k % n === 0);
  return usage(firsts.reduce((t, s) => t + s.promptTokens, 0), completionTokens, firsts.reduce((t, s) => t + s.cachedTokens, 0));
}

async function* resume(first: IteratorResult<StreamEvent>, it: AsyncIterator<StreamEvent>, cancel: () => void): AsyncGenerator<StreamEvent> {
  let done = first.done === true;
  try {
    if (done) return;
    yield first.value;
    for (;;) {
      const r = await it.next();
      if (r.done) {
        done = true;
        return;
      }
      yield r.value;
      if (r.value.finishReason !== null) done = true;
    }
  } finally {
    if (!done) cancel();
  }
}

export interface Collected {
  events: StreamEvent[];
  text: string;
  finishReason: "stop" | "length";
  /** vLLM's stop_reason: the stop string matched, or null. */
  stopReason: string | number | null;
}

export async function collect(s: Started): Promise<Collected> {
  const events: StreamEvent[] = [];
  for await (const e of s.events) events.push(e);
  const last = events[events.length - 1];
  return { events, text: events.map((e) => e.text).join(""), finishReason: last?.finishReason ?? "length", stopReason: last?.stopReason ?? null };
}

/** Collects every request; if one fails, the others are cancelled. */
export async function collectAll(started: Started[]): Promise<Collected[]> {
  try {
    return await Promise.all(started.map(collect));
  } catch (e) {
    started.forEach((s) => s.cancel());
    throw e;
  }
}

const tokenTexts = new WeakMap<TextTokenizer, Map<number, string>>();

/** One token's text with its leading space (for logprob listings; the stream's text comes from the detokenizer). */
export function tokenString(tokenizer: TextTokenizer, id: number): string {
  let cache = tokenTexts.get(tokenizer);
  if (!cache) tokenTexts.set(tokenizer, (cache = new Map()));
  let s = cache.get(id);
  if (s === undefined) {
    s = tokenText(tokenizer, id);
    if (cache.size < 200_000) cache.set(id, s);
  }
  return s;
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

export function requestId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replace(/-/g, "")}`;
}

/** vLLM's prompt_logprobs: per prompt position null or {token id: {logprob, rank, decoded_token}} (the token and its alternatives). */
export function vllmPromptLogprobs(tokenizer: TextTokenizer, entries: (PromptTokenLogprob | null)[]) {
  return entries.map((e) => {
    if (!e) return null;
    const out: Record<string, { logprob: number; rank: number | null; decoded_token: string }> = {};
    e.top.forEach((t, i) => (out[t.id] = { logprob: t.logprob, rank: i + 1, decoded_token: tokenString(tokenizer, t.id) }));
    out[e.id] ??= { logprob: e.logprob, rank: e.rank, decoded_token: tokenString(tokenizer, e.id) };
    return out;
  });
}
