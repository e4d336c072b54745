// loracuda.h's logit rules on one row, computed independently of the native code: one fp32 rounding
// per operation in the header's order (mask, bias, repetition, frequency, presence), from the counts
// of the row's output tokens and the set of its prompt tokens.
const f = Math.fround;

export interface RowRulesSpec {
  /** Allowed token ids (absent: every token). */
  allowed?: ReadonlySet<number> | readonly number[];
  bias?: ReadonlyMap<number, number>;
  penalties?: { presence: number; frequency: number; repetition: number; outputCounts: (v: number) => number; inPrompt: (v: number) => boolean };
}

export function ruledRow(raw: ArrayLike<number>, spec: RowRulesSpec): Float32Array {
  const allowed = spec.allowed && (spec.allowed instanceof Set ? spec.allowed : new Set(spec.allowed as number[]));
  const out = new Float32Array(raw.length);
  for (let v = 0; v < raw.length; v++) {
    if (allowed && !allowed.has(v)) {
      out[v] = -Infinity;
      continue;
    }
    let l = f(raw[v] + (spec.bias?.get(v) ?? 0));
    const p = spec.penalties;
    if (p) {
      const o = p.outputCounts(v);
      if (o > 0 || p.inPrompt(v)) l = l > 0 ? f(l / f(p.repetition)) : f(l * f(p.repetition));
      l = f(l - f(f(p.frequency) * o));
      if (o > 0) l = f(l - f(p.presence));
    }
    out[v] = l;
  }
  return out;
}
