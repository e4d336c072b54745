// lc_logit_rules (loracuda.h) as TypeScript builds it for lc_logit_rules_apply: device pointers of
// the three rule groups (absent: no row uses that group), packed as the C struct.
import type { DevPtr } from "./native-types.ts";

export interface LogitRulesTables {
  /** Grammar masks: mask row per logit row (-1: none) into allowed [nMaskRows, ceil(vocab / 32)] u32. */
  mask?: { maskRow: DevPtr; allowed: DevPtr; nMaskRows: number };
  /** logit_bias in CSR form: indptr [nRows + 1], ids ascending per row, values f32. */
  bias?: { indptr: DevPtr; ids: DevPtr; values: DevPtr };
  /** Penalties: count row per logit row (-1: none) into the [nCountRows, vocab] i32 tables; f32 per row. */
  penalties?: {
    countRow: DevPtr; outputCounts: DevPtr; promptCounts: DevPtr; nCountRows: number;
    presence: DevPtr; frequency: DevPtr; repetition: DevPtr;
  };
}

export function packLogitRules(r: LogitRulesTables): BigUint64Array {
  const m = r.mask, b = r.bias, p = r.penalties;
  const fields = [
    m?.maskRow, m?.allowed, b?.indptr, b?.ids, b?.values,
    p?.countRow, p?.outputCounts, p?.promptCounts, p?.presence, p?.frequency, p?.repetition,
    m?.nMaskRows, p?.nCountRows,
  ];
  return BigUint64Array.from(fields, (v) => BigInt(v ?? 0));
}
