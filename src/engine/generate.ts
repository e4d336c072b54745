// Offline generation over a loaded model: prompts (text, ids or chat) in, tokens with text and
// log-probabilities out, every request of a call in the same batch.
import type { ChatMessage } from "../tokenizer/chat.ts";
import { IncrementalDetokenizer } from "../tokenizer/detokenizer.ts";
import type { LoadedModel } from "./load-model.ts";
import { randomSeed, type SamplingParams } from "./sampling.ts";
import type { Sequence } from "./sequence.ts";

export interface GenerateRequest {
  adapter?: string | null;
  prompt?: string;
  promptIds?: number[];
  messages?: ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number | bigint;
  topLogprobs?: number;
  ignoreEos?: boolean;
  /** Tokens that end generation besides EOS (vLLM's stop_token_ids). */
  stopTokenIds?: number[];
  presencePenalty?: number;
  frequencyPenalty?: number;
  repetitionPenalty?: number;
  minP?: number;
  logitBias?: ReadonlyMap<number, number>;
}

export interface GeneratedTokenJson {
  id: number;
  text: string;
  logprob: number;
  top_logprobs: { id: number; logprob: number }[];
}

export interface GenerateResult {
  adapter: string | null;
  prompt_ids: number[];
  tokens: GeneratedTokenJson[];
  text: string;
  finish_reason: string;
}

export class GenerateRequestError extends Error {
  override name = "GenerateRequestError";
}

const DEFAULT_MAX_TOKENS = 64;

export function promptIdsOf(model: LoadedModel, req: GenerateRequest): number[] {
  const given = [req.prompt !== undefined, req.promptIds !== undefined, req.messages !== undefined].filter(Boolean).length;
  if (given !== 1) throw new GenerateRequestError("give exactly one of prompt, prompt_ids or messages");
  if (req.promptIds) return req.promptIds;
  if (req.messages) return model.tokenizer.encode(model.chat.render(req.messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
  return model.tokenizer.encode(req.prompt!);
}

/** Request values first, then generation_config.json (as vLLM does), then greedy. */
export function samplingParamsOf(model: LoadedModel, req: GenerateRequest): SamplingParams {
  const g = model.generation;
  const sampleByDefault = g.doSample !== false && g.temperature !== undefined;
  return {
    temperature: req.temperature ?? (sampleByDefault ? g.temperature! : 0),
    topP: req.topP ?? (sampleByDefault ? g.topP ?? 1 : 1),
    topK: req.topK ?? (sampleByDefault ? g.topK ?? 0 : 0),
    seed: req.seed === undefined ? randomSeed() : BigInt(req.seed),
    maxTokens: req.maxTokens ?? DEFAULT_MAX_TOKENS,
    topLogprobs: req.topLogprobs ?? 0,
    ignoreEos: req.ignoreEos ?? false,
    stopTokenIds: [...new Set([...(g.eosTokenIds ?? []), ...model.config.eosTokenIds])],
    ...(req.stopTokenIds?.length ? { extraStopTokenIds: req.stopTokenIds } : {}),
    presencePenalty: req.presencePenalty,
    frequencyPenalty: req.frequencyPenalty,
    repetitionPenalty: req.repetitionPenalty,
    minP: req.minP,
    logitBias: req.logitBias,
  };
}

/**
 * Runs all requests together and returns one result per request, in order. `onText` receives each
 * request's text as it is generated.
 */
export function generate(model: LoadedModel, reqs: GenerateRequest[], onText?: (index: number, piece: string) => void): GenerateResult[] {
  const { engine, tokenizer } = model;
  const tracked = new Map<Sequence, { index: number; detok: IncrementalDetokenizer; tokens: GeneratedTokenJson[] }>();
  const prepared = reqs.map((req) => ({ promptIds: promptIdsOf(model, req), adapter: req.adapter ?? null, params: samplingParamsOf(model, req) }));
  // all or nothing: a bad request (or adapter) queues none of the others
  prepared.forEach((r) => {
    engine.check(r);
    if (r.adapter !== null) model.adapters.get(r.adapter);
  });
  const seqs = prepared.map((r, index) => {
    const seq = engine.add(r);
    tracked.set(seq, { index, detok: new IncrementalDetokenizer(tokenizer, { skipSpecialTokens: true }), tokens: [] });
    return seq;
  });
  const previous = engine.events;
  engine.events = { ...previous, token: (seq) => {
    const t = tracked.get(seq);
    if (!t) return previous.token(seq);
    const token = seq.outputs[seq.outputs.length - 1];
    let text = t.detok.push(token.id);
    if (seq.finished) text += t.detok.flush();
    t.tokens.push({ id: token.id, text, logprob: token.logprob, top_logprobs: token.topLogprobs });
    if (text) onText?.(t.index, text);
  } };
  try {
    engine.runToCompletion();
  } finally {
    engine.events = previous;
  }
  return seqs.map((seq) => {
    const t = tracked.get(seq)!;
    return {
      adapter: seq.adapter,
      prompt_ids: [...seq.promptIds],
      tokens: t.tokens,
      text: t.detok.text,
      finish_reason: seq.finishReason ?? "length",
    };
  });
}
