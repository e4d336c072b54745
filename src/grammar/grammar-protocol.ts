// Messages between the engine thread (grammar-service.ts) and the grammar thread (grammar-worker.ts).
// Masks travel through shared memory: the engine posts a step, runs the forward pass, then waits on
// the step's counter, which the grammar thread bumps once every row's mask is written.
import type { GrammarVocab } from "./grammar-vocab.ts";
import type { GrammarSpec } from "./grammar-spec.ts";

export interface MaskRowRequest {
  seqId: number;
  key: string;
  /** The sequence's stop tokens (its grammar ends with one of them). */
  stopTokenIds: number[];
  /** Tokens generated since the last request for this sequence, to advance its matcher first. */
  accept: number[];
}

export type GrammarRequest =
  | { kind: "init"; vocab: GrammarVocab; shared: SharedArrayBuffer; maxRows: number }
  | { kind: "compile"; id: number; key: string; spec: GrammarSpec }
  | { kind: "step"; step: number; rows: MaskRowRequest[] }
  | { kind: "close"; seqIds: number[] };

export type GrammarReply = { kind: "compiled"; id: number; error?: string; ms: number };

/** Row status written beside each mask. */
export const ROW_OK = 0, ROW_REJECTED = 1, ROW_NO_GRAMMAR = 2;

/**
 * Shared layout (Int32 words): [0] the last finished step, [1] mask time of that step in µs,
 * [2 .. 2 + maxRows) row status, then maxRows masks of `words` u32 each.
 */
export const HEADER_WORDS = 2;
export const sharedBytes = (maxRows: number, words: number) => 4 * (HEADER_WORDS + maxRows + maxRows * words);
