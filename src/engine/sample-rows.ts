// Each running sequence's row of the sampler: its sampling settings, the uniform for this step, the
// tokens it may not produce yet, its logit_bias and its penalty count row (held while it runs).
import type { LogitRules } from "./logit-rules.ts";
import type { SampleRow } from "./model-runner.ts";
import { hasPenalties, uniformFor, type SamplingParams } from "./sampling.ts";
import type { Sequence } from "./sequence.ts";
import { bannedByBadWords } from "../tokenizer/bad-words.ts";

export class SampleRows {
  private readonly countRows = new Map<Sequence, number>();
  // logit_bias as the sorted arrays lc_logit_rules_apply reads, built once per request
  private readonly biasOf = new WeakMap<SamplingParams, { ids: Int32Array; values: Float32Array }>();

  constructor(private readonly rules: Pick<LogitRules, "acquireCountRow" | "releaseCountRow">) {}

  rowFor(seq: Sequence, allowed?: Uint32Array): SampleRow {
    const p = seq.params;
    return {
      temperature: p.temperature, topK: p.topK, topP: p.topP, minP: p.minP ?? 0,
      uniform: p.temperature > 0 ? uniformFor(p.seed, seq.outputs.length) : 0, // greedy reads none
      banned: this.banned(seq),
      bias: this.bias(p),
      penalties: hasPenalties(p) ? {
        countRow: this.countRow(seq), presence: p.presencePenalty ?? 0, frequency: p.frequencyPenalty ?? 0, repetition: p.repetitionPenalty ?? 1,
      } : undefined,
      allowed,
    };
  }

  // as vLLM: stop tokens cannot be sampled before min_tokens; nor the token that would complete a bad word
  private banned(seq: Sequence): number[] | undefined {
    const p = seq.params;
    const early = seq.outputs.length < (p.minTokens ?? 0) ? bannedBeforeMinTokens(p) ?? [] : [];
    // only the tokens a bad word's other tokens could match: the output's tail
    const longest = p.badWords?.length ? Math.max(...p.badWords.map((w) => w.length - 1)) : 0;
    const tail = longest > 0 ? seq.outputs.slice(Math.max(0, seq.outputs.length - longest)).map((t) => t.id) : [];
    const bad = p.badWords?.length ? bannedByBadWords(p.badWords, tail) : [];
    return early.length || bad.length ? [...early, ...bad] : undefined;
  }

  /** The sequence stopped running (finished, preempted, failed) or its device counts may be ahead of its tokens. */
  release(seq: Sequence): void {
    const row = this.countRows.get(seq);
    if (row === undefined) return;
    this.countRows.delete(seq);
    this.rules.releaseCountRow(row);
  }

  private countRow(seq: Sequence): number {
    let row = this.countRows.get(seq);
    if (row === undefined) {
      row = this.rules.acquireCountRow(seq.promptIds, seq.outputs.map((t) => t.id));
      this.countRows.set(seq, row);
    }
    return row;
  }

  private bias(p: SamplingParams) {
    if (!p.logitBias?.size) return undefined;
    let b = this.biasOf.get(p);
    if (!b) {
      const entries = [...p.logitBias].sort((x, y) => x[0] - y[0]);
      b = { ids: Int32Array.from(entries, (e) => e[0]), values: Float32Array.from(entries, (e) => e[1]) };
      this.biasOf.set(p, b);
    }
    return b;
  }
}

/** Before min_tokens: the request's own stop tokens, and EOS unless it is ignored. */
function bannedBeforeMinTokens(p: SamplingParams): number[] | undefined {
  const ids = [...(p.ignoreEos ? [] : p.stopTokenIds), ...(p.extraStopTokenIds ?? [])];
  return ids.length > 0 ? ids : undefined;
}
