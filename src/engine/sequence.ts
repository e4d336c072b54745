// One request's state inside the engine.
import type { SamplingParams } from "./sampling.ts";

export type FinishReason = "stop" | "length";

/** A prompt token's log-probability given the tokens before it, its rank, and the likeliest alternatives. */
export interface PromptTokenLogprob {
  id: number;
  logprob: number;
  /** 1 for the likeliest token. */
  rank: number;
  top: { id: number; logprob: number }[];
}

export interface GeneratedToken {
  id: number;
  logprob: number;
  topLogprobs: { id: number; logprob: number }[];
}

export class Sequence {
  readonly outputs: GeneratedToken[] = [];
  /** Physical KV blocks, in order. */
  blockTable: number[] = [];
  /** Tokens whose K/V are in the cache. */
  numComputed = 0;
  /** Prefix-cache names of its full blocks, computed once and extended as it grows (see BlockManager). */
  hashChain: { identity: string; hashes: string[] } | null = null;
  /** Blocks of blockTable already offered to the prefix cache. */
  registeredBlocks = 0;
  /** Prompt tokens found in the prefix cache when it was first scheduled (null: not yet scheduled). */
  cachedTokens: number | null = null;
  finishReason: FinishReason | null = null;
  /** The request's own stop token that ended it (vLLM's stop_reason), if one did. */
  stoppedByToken: number | null = null;
  /** Per prompt position (null for the first, which nothing predicts), once computed. */
  promptLogprobs: (PromptTokenLogprob | null)[] | null = null;

  constructor(
    readonly id: number,
    readonly promptIds: readonly number[],
    /** Adapter name, or null for the base model. */
    readonly adapter: string | null,
    readonly params: SamplingParams,
  ) {}

  get length(): number {
    return this.promptIds.length + this.outputs.length;
  }

  tokenAt(i: number): number {
    return i < this.promptIds.length ? this.promptIds[i] : this.outputs[i - this.promptIds.length].id;
  }

  tokenSlice(start: number, end: number): Int32Array {
    const out = new Int32Array(end - start);
    for (let i = start; i < end; i++) out[i - start] = this.tokenAt(i);
    return out;
  }

  /** Asked for prompt log-probabilities not computed yet: its whole prompt must run, logits at every position. */
  get needsPromptLogprobs(): boolean {
    return this.params.promptLogprobs !== undefined && this.promptLogprobs === null;
  }

  get finished(): boolean {
    return this.finishReason !== null;
  }

  /** Records a sampled token and decides whether the sequence ends. */
  append(token: GeneratedToken): void {
    this.outputs.push(token);
    if (this.mayStop && this.params.extraStopTokenIds?.includes(token.id)) {
      this.finishReason = "stop";
      this.stoppedByToken = token.id;
    } else if (!this.params.ignoreEos && this.mayStop && this.params.stopTokenIds.includes(token.id)) this.finishReason = "stop";
    else if (this.outputs.length >= this.params.maxTokens) this.finishReason = "length";
  }

  /** Whether min_tokens is reached, so that a stop token or string may end the sequence. */
  get mayStop(): boolean {
    return this.outputs.length >= (this.params.minTokens ?? 0);
  }

  /** Ends the sequence after its current token (a stop string matched). */
  stop(): void {
    this.finishReason ??= "stop";
  }
}
