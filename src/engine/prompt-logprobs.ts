// Prompt log-probabilities from the logits the prefill step computed at every prompt position:
// position p's logits score token p + 1. Computed on the host from the downloaded rows.
import type { ScheduledSeq } from "./batch-builder.ts";
import type { StepRunner } from "./engine.ts";
import type { PromptTokenLogprob, Sequence } from "./sequence.ts";

/** One entry per prompt token, null for the first; `rows` holds the logits of positions 0 .. n - 2. */
export function promptLogprobsFrom(rows: Float32Array, vocab: number, promptIds: readonly number[], top: number): (PromptTokenLogprob | null)[] {
  const out: (PromptTokenLogprob | null)[] = [null];
  for (let p = 0; p + 1 < promptIds.length; p++) {
    const row = rows.subarray(p * vocab, (p + 1) * vocab);
    let max = -Infinity;
    for (let i = 0; i < vocab; i++) if (row[i] > max) max = row[i];
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(row[i] - max);
    const logZ = max + Math.log(sum);
    const id = promptIds[p + 1];
    let rank = 1;
    for (let i = 0; i < vocab; i++) if (row[i] > row[id]) rank++;
    out.push({ id, logprob: row[id] - logZ, rank, top: topK(row, top).map((i) => ({ id: i, logprob: row[i] - logZ })) });
  }
  return out;
}

function topK(row: Float32Array, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < row.length && k > 0; i++) {
    if (best.length === k && row[i] <= row[best[k - 1]]) continue;
    let j = best.length < k ? best.length : k - 1;
    while (j > 0 && row[best[j - 1]] < row[i]) j--;
    best.splice(j, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}

/** The scored prompts of one step: their rows follow the sampling rows, in item order (batch-builder.ts); read before sampling. */
export function scorePrompts(runner: StepRunner, items: ScheduledSeq[], rows: number): Map<Sequence, (PromptTokenLogprob | null)[]> {
  const scored = new Map<Sequence, (PromptTokenLogprob | null)[]>();
  if (!items.some((it) => it.promptRows)) return scored;
  const vocab = runner.config.vocabSize;
  const logits = runner.readLogits(rows);
  let row = items.length;
  for (const { seq, promptRows } of items) {
    if (!promptRows) continue;
    const n = seq.promptIds.length - 1;
    scored.set(seq, promptLogprobsFrom(logits.subarray(row * vocab, (row + n) * vocab), vocab, seq.promptIds, seq.params.promptLogprobs ?? 0));
    row += n;
  }
  return scored;
}
