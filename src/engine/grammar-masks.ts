// What the engine needs of structured output (src/grammar/ implements it): each step, the constrained
// sequences are handed over before the forward pass and their next-token masks collected after it.
import type { Sequence } from "./sequence.ts";

/** A row's mask (bit v of word v / 32: token v allowed), or why it has none this step. */
export type GrammarRowResult = Uint32Array | "pending" | "rejected" | "unavailable";

export interface GrammarMasks {
  /** Starts the masks of these sequences (their tokens since the last call are accepted first). */
  begin(seqs: Sequence[]): void;
  /** The masks of the sequences begun, in the same order; "pending" rows sit this step out. */
  end(seqs: Sequence[]): Map<Sequence, GrammarRowResult>;
  /** The sequence left the engine: its matcher goes. */
  release(seq: Sequence): void;
}
