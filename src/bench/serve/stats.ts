// Summaries of one benchmark point: percentiles and Jain's fairness index.

/** The q-th percentile (0..100) by linear interpolation between closest ranks, as numpy's default. */
export function percentile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (q / 100) * (s.length - 1);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export interface Spread {
  mean: number;
  p50: number;
  p90: number;
  p99: number;
}

export function spread(values: number[]): Spread {
  const mean = values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
  return { mean, p50: percentile(values, 50), p90: percentile(values, 90), p99: percentile(values, 99) };
}

/** Jain's index (Σx)² / (n·Σx²): 1 when every x is equal, 1/n when one takes everything. */
export function jainIndex(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const sum = xs.reduce((a, b) => a + b, 0), squares = xs.reduce((a, b) => a + b * b, 0);
  return squares === 0 ? 1 : (sum * sum) / (xs.length * squares);
}
