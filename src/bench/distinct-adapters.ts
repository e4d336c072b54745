// A check that the benchmark's "distinct adapters" really differ: each row's logits must change
// when its adapter slot is swapped for the next one's. Slots holding the same weights (a loading
// bug, or a kernel that ignores the slot) would leave every row unchanged and flatter the figures.
import { buildBatch, type ScheduledSeq } from "../engine/batch-builder.ts";
import type { ModelRunner } from "../engine/model-runner.ts";

// Rows reordered by the swap could move by rounding alone: a few units in the last place of the
// row's largest logit in the activation dtype. A different adapter must move a row by more.
const EPSILON = { F32: 2 ** -23, F16: 2 ** -10, BF16: 2 ** -7 } as const;
const ULPS = 4;

export function distinctAdaptersCheck(runner: ModelRunner, items: ScheduledSeq[], blockSize: number, maxBlocksPerSeq: number, slots: number) {
  const vocab = runner.config.vocabSize;
  const logitsBySeq = (assign: (slot: number) => number) => {
    const batch = items.map((it) => ({ ...it, slot: assign(it.slot) })).sort((a, b) => a.slot - b.slot);
    runner.run(buildBatch(batch, blockSize, maxBlocksPerSeq));
    const logits = runner.readLogits(batch.length);
    return new Map(batch.map((it, r) => [it.seq, logits.subarray(r * vocab, (r + 1) * vocab)]));
  };
  const own = logitsBySeq((slot) => slot);
  const swapped = logitsBySeq((slot) => (slot + 1) % slots);
  let worst = Infinity; // the smallest change over rows, in units of that row's rounding bound
  for (const it of items) {
    const a = own.get(it.seq)!, b = swapped.get(it.seq)!;
    let change = 0, top = 0;
    for (let i = 0; i < vocab; i++) {
      change = Math.max(change, Math.abs(a[i] - b[i]));
      top = Math.max(top, Math.abs(a[i]));
    }
    worst = Math.min(worst, change / (ULPS * EPSILON[runner.act] * Math.max(1, top)));
  }
  return {
    what: `${items.length} distinct adapters change their rows' logits`,
    target: `every row's max |logit change| > ${ULPS} ulp of its largest logit when its slot is swapped`,
    measured: `smallest change ${worst.toPrecision(3)} x that bound`, pass: worst > 1,
  };
}
