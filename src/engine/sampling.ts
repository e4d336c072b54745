// Per-request sampling parameters and the seeded uniform stream that makes sampling reproducible.

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off. */
  topK: number;
  seed: bigint;
  maxTokens: number;
  /** Alternatives reported per token (0 = none). */
  topLogprobs: number;
  /** Log-probabilities of the prompt's tokens too, with this many alternatives each (undefined: none). */
  promptLogprobs?: number;
  ignoreEos: boolean;
  /** Token ids that end the sequence (the model's EOS unless ignoreEos). */
  stopTokenIds: number[];
  /** The request's own stop tokens (vLLM's stop_token_ids): they end it even with ignoreEos. */
  extraStopTokenIds?: number[];
  /**
   * Before this many tokens, stop tokens cannot be sampled (their logits are masked, as in vLLM,
   * so reported log-probabilities are those of the masked distribution) and stop strings do not
   * end the sequence.
   */
  minTokens?: number;
  /** OpenAI: subtracted from the logit of every token already generated; in [-2, 2]. */
  presencePenalty?: number;
  /** OpenAI: subtracted once per time a token has been generated; in [-2, 2]. */
  frequencyPenalty?: number;
  /** vLLM / transformers: logits of tokens in the prompt or output divided by it (multiplied where negative); > 0, 1 = off. */
  repetitionPenalty?: number;
  /** Drop tokens less likely than min_p times the most likely one (after temperature); in [0, 1], 0 = off. */
  minP?: number;
  /** Token id -> added to its logit (in [-100, 100]), before the penalties. */
  logitBias?: ReadonlyMap<number, number>;
  /** vLLM's bad_words as token sequences (see tokenizer/bad-words.ts): the last token of each is never completed. */
  badWords?: readonly number[][];
  /** Structured output: the compiled grammar every token must keep the text within (see src/grammar/). */
  grammar?: { key: string; field: string };
}

/** Whether the sequence needs device-side token counts. */
export function hasPenalties(p: SamplingParams): boolean {
  return (p.presencePenalty ?? 0) !== 0 || (p.frequencyPenalty ?? 0) !== 0 || (p.repetitionPenalty ?? 1) !== 1;
}

export const MAX_TOP_LOGPROBS = 20;

export class SamplingError extends Error {
  override name = "SamplingError";
}

export function checkSamplingParams(p: SamplingParams): void {
  const bad = (field: string, why: string): never => {
    throw new SamplingError(`${field} ${why}`);
  };
  if (!(p.temperature >= 0) || !Number.isFinite(p.temperature)) bad("temperature", `must be >= 0, got ${p.temperature}`);
  if (!(p.topP > 0 && p.topP <= 1)) bad("top_p", `must be in (0, 1], got ${p.topP}`);
  if (!Number.isInteger(p.topK) || p.topK < 0) bad("top_k", `must be an integer >= 0 (0 = off), got ${p.topK}`);
  if (!Number.isInteger(p.maxTokens) || p.maxTokens < 1) bad("max_tokens", `must be an integer >= 1, got ${p.maxTokens}`);
  if (p.minTokens !== undefined && (!Number.isInteger(p.minTokens) || p.minTokens < 0 || p.minTokens > p.maxTokens)) {
    bad("min_tokens", `must be an integer in [0, max_tokens], got ${p.minTokens}`);
  }
  for (const [field, v] of [["presence_penalty", p.presencePenalty], ["frequency_penalty", p.frequencyPenalty]] as const) {
    if (v !== undefined && !(v >= -2 && v <= 2)) bad(field, `must be in [-2, 2], got ${v}`);
  }
  const rep = p.repetitionPenalty;
  if (rep !== undefined && !(rep > 0 && rep <= 100)) bad("repetition_penalty", `must be in (0, 100], got ${rep}`);
  if (p.minP !== undefined && !(p.minP >= 0 && p.minP <= 1)) bad("min_p", `must be in [0, 1], got ${p.minP}`);
  for (const [id, v] of p.logitBias ?? []) {
    if (!Number.isInteger(id) || id < 0) bad("logit_bias", `keys must be token ids, got ${id}`);
    if (!(v >= -100 && v <= 100)) bad("logit_bias", `values must be in [-100, 100], got ${v} for token ${id}`);
  }
  if (!Number.isInteger(p.topLogprobs) || p.topLogprobs < 0 || p.topLogprobs > MAX_TOP_LOGPROBS) {
    bad("top_logprobs", `must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${p.topLogprobs}`);
  }
}

const MASK64 = (1n << 64n) - 1n;

// splitmix64: a well-mixed 64-bit hash, so (seed, step) pairs give independent uniforms.
export function splitmix64(x: bigint): bigint {
  x = (x + 0x9e3779b97f4a7c15n) & MASK64;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return x ^ (x >> 31n);
}

/** The uniform in [0, 1) used for the `step`-th token of a request with this seed (24 bits: exact in f32). */
export function uniformFor(seed: bigint, step: number): number {
  const h = splitmix64(splitmix64(seed & MASK64) ^ BigInt(step));
  return Number(h >> 40n) / 2 ** 24;
}

export function randomSeed(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(words[0]) << 32n) | BigInt(words[1]);
}
