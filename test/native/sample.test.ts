// lc_sample (loracuda.h) on the CPU library, against distributions computed here in float64;
// and the seeded uniform stream of src/engine/sampling.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { Device } from "../../src/native/device.ts";
import { uniformFor } from "../../src/engine/sampling.ts";

const device = await Device.open("cpu");
afterAll(() => device.close());

interface Row { logits: number[]; temperature: number; topK?: number; topP?: number; minP?: number; uniform?: number }

function sample(rows: Row[], nTop = 0) {
  const n = rows.length, vocab = rows[0].logits.length;
  const logits = Float32Array.from(rows.flatMap((r) => r.logits));
  const bufs: number[] = [];
  const put = (a: Float32Array | Int32Array) => {
    const p = device.alloc(Math.max(4, a.byteLength));
    device.upload(p, a);
    bufs.push(p);
    return p;
  };
  const out = (bytes: number) => {
    const p = device.alloc(Math.max(4, bytes));
    bufs.push(p);
    return p;
  };
  const outIds = out(n * 4), outLogprob = out(n * 4), outTopIds = out(n * nTop * 4), outTopLogprobs = out(n * nTop * 4);
  device.sample({
    act: "F32", logits: put(logits), nRows: n, vocab,
    temperature: put(Float32Array.from(rows, (r) => r.temperature)), topK: put(Int32Array.from(rows, (r) => r.topK ?? 0)),
    topP: put(Float32Array.from(rows, (r) => r.topP ?? 1)), minP: put(Float32Array.from(rows, (r) => r.minP ?? 0)), uniforms: put(Float32Array.from(rows, (r) => r.uniform ?? 0.5)),
    nTop, outIds, outLogprob, outTopIds: nTop ? outTopIds : null, outTopLogprobs: nTop ? outTopLogprobs : null,
  });
  const res = { ids: new Int32Array(n), logprobs: new Float32Array(n), topIds: new Int32Array(n * nTop), topLogprobs: new Float32Array(n * nTop) };
  device.download(outIds, res.ids);
  device.download(outLogprob, res.logprobs);
  if (nTop) {
    device.download(outTopIds, res.topIds);
    device.download(outTopLogprobs, res.topLogprobs);
  }
  for (const p of bufs) device.free(p);
  return res;
}

/** The header's rule, independently: softmax(l / T), top_k, min_p (p >= min_p * max p), renormalise, top_p prefix, renormalise. */
function keptDistribution(logits: number[], temperature: number, topK: number, topP: number, minP = 0): number[] {
  const order = logits.map((_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  const max = Math.max(...logits);
  const w = logits.map((l) => Math.exp((l - max) / temperature));
  let kept = order.slice(0, topK > 0 ? topK : order.length).filter((i) => w[i] >= minP); // w[i] = p_i / max p
  let mass = kept.reduce((s, i) => s + w[i], 0);
  if (topP < 1) {
    const prefix: number[] = [];
    let cum = 0;
    for (const i of kept) {
      prefix.push(i);
      cum += w[i] / mass;
      if (cum >= topP) break;
    }
    kept = prefix;
    mass = kept.reduce((s, i) => s + w[i], 0);
  }
  return logits.map((_, i) => (kept.includes(i) ? w[i] / mass : 0));
}

const logSoftmax = (l: number[]) => {
  const max = Math.max(...l);
  const lse = max + Math.log(l.reduce((s, v) => s + Math.exp(v - max), 0));
  return l.map((v) => v - lse);
};

describe("lc_sample distributions", () => {
  const LOGITS = [2.0, 1.0, 0.5, 3.0, -1.0, 0.0];
  const N = 1000;
  const cases: [string, number, number, number, number][] = [
    ["temperature only", 0.7, 0, 1, 0],
    ["top_k", 1.3, 3, 1, 0],
    ["top_p", 1.0, 0, 0.85, 0],
    ["top_k + top_p", 2.0, 4, 0.7, 0],
    ["min_p", 1.0, 0, 1, 0.3],
    ["min_p at a high temperature", 3.0, 0, 1, 0.5],
    ["top_k + min_p + top_p", 1.5, 5, 0.9, 0.2],
  ];

  // All cases in one call: each row uses its own parameters.
  const rows: Row[] = cases.flatMap(([, temperature, topK, topP, minP]) =>
    Array.from({ length: N }, (_, i) => ({ logits: LOGITS, temperature, topK, topP, minP, uniform: (i + 0.5) / N })));
  const { ids } = sample(rows);

  cases.forEach(([label, temperature, topK, topP, minP], c) => {
    test(`${label}: T=${temperature} top_k=${topK} top_p=${topP} min_p=${minP}`, () => {
      const p = keptDistribution(LOGITS, temperature, topK, topP, minP);
      const counts = new Array(LOGITS.length).fill(0);
      for (let i = 0; i < N; i++) counts[ids[c * N + i]]++;
      // uniforms on a regular grid: token k takes the grid points inside its cumulative-mass
      // interval, which are round(p_k N) up to one point at each end of the interval
      p.forEach((pk, k) => {
        if (pk === 0) expect(counts[k]).toBe(0);
        else expect(Math.abs(counts[k] - Math.round(pk * N))).toBeLessThanOrEqual(1);
      });
      // and the walk goes from most to least likely: the first grid points go to the argmax
      expect(ids[c * N]).toBe(3);
    });
  });

  test("the cases exercise what they name", () => {
    const support = (t: number, k: number, pp: number, mp: number) => keptDistribution(LOGITS, t, k, pp, mp).filter((x) => x > 0).length;
    // min_p 0.3 at T 1 keeps logits within ln(0.3) = -1.2 of the top (3, 2); at T 3, min_p 0.5 keeps
    // those within 3 ln(0.5) = -2.08 (3, 2, 1); top_k 5 + min_p 0.2 at T 1.5 keeps 3, 2, 1, 0.5, then top_p 0.9 cuts
    expect(cases.map(([, t, k, pp, mp]) => support(t, k, pp, mp))).toEqual([6, 3, 3, 2, 2, 3, 3]);
  });

  test("ties: the lower id comes first in the walk and in top_k", () => {
    const l = [1, 2, 2, 0];
    const r = sample([
      { logits: l, temperature: 1, topK: 1, uniform: 0.99 },
      { logits: l, temperature: 1, uniform: 0.01 },
      { logits: l, temperature: 1, uniform: 0.5 },
    ]);
    const p = keptDistribution(l, 1, 0, 1); // p1 = p2 ~ 0.3995: u 0.01 falls in the first, 0.5 in the second
    expect(p[1]).toBeGreaterThan(0.39);
    expect([...r.ids]).toEqual([1, 1, 2]);
  });
});

describe("lc_sample greedy and log-probabilities", () => {
  test("temperature 0: argmax, lowest id on ties, whatever top_k / top_p / uniform say", () => {
    const l = [0, 3, 1, 3, -2];
    const r = sample([
      { logits: l, temperature: 0, uniform: 0.999 },
      { logits: l, temperature: 0, topK: 2, topP: 0.1, uniform: 0 },
      { logits: [5, 1, 1, 1, 1], temperature: 0 },
      { logits: [-9, -8, -7, -3, -3], temperature: 0 },
    ]);
    expect([...r.ids]).toEqual([1, 1, 0, 3]);
  });

  test("logprob is the raw log_softmax, not temperature-scaled; top-n descending with ties by id", () => {
    const l = [1, 3, 3, 2, 0, 3, -4];
    const lp = logSoftmax(l);
    const r = sample([
      { logits: l, temperature: 2.5, uniform: 0.9 },
      { logits: l, temperature: 0 },
    ], 4);
    for (let row = 0; row < 2; row++) {
      // fp32 output of a float64 computation: |logprob| < 10, so 1e-6 absolute is ~2 ulp
      expect(Math.abs(r.logprobs[row] - lp[r.ids[row]])).toBeLessThan(1e-6);
      expect([...r.topIds.subarray(row * 4, row * 4 + 4)]).toEqual([1, 2, 5, 3]);
      [1, 2, 5, 3].forEach((id, j) => expect(Math.abs(r.topLogprobs[row * 4 + j] - lp[id])).toBeLessThan(1e-6));
    }
    expect(r.ids[1]).toBe(1);
    // a temperature-scaled logprob would differ by far more than the tolerance
    const scaled = logSoftmax(l.map((v) => v / 2.5));
    expect(Math.abs(scaled[r.ids[0]] - lp[r.ids[0]])).toBeGreaterThan(0.1);
  });
});

describe("uniformFor", () => {
  test("deterministic per (seed, step), in [0, 1), 24-bit", () => {
    for (let step = 0; step < 100; step++) {
      const u = uniformFor(42n, step);
      expect(uniformFor(42n, step)).toBe(u);
      expect(u).toBeGreaterThanOrEqual(0);
      expect(u).toBeLessThan(1);
      expect(Number.isInteger(u * 2 ** 24)).toBe(true);
      expect(Math.fround(u)).toBe(u); // exact in the f32 the kernel reads
    }
    expect(uniformFor(2n ** 64n + 42n, 3)).toBe(uniformFor(42n, 3)); // seeds are taken mod 2^64
  });

  test("different across steps and across seeds", () => {
    const steps = new Set(Array.from({ length: 1000 }, (_, i) => uniformFor(7n, i)));
    const seeds = new Set(Array.from({ length: 1000 }, (_, i) => uniformFor(BigInt(i), 0)));
    // 1000 draws from 2^24 values: a collision has probability ~3%, more than a couple means a bug
    expect(steps.size).toBeGreaterThanOrEqual(998);
    expect(seeds.size).toBeGreaterThanOrEqual(998);
    expect(uniformFor(1n, 5)).not.toBe(uniformFor(2n, 5));
  });

  test("roughly uniform: chi-square over 10 bins", () => {
    // 9 degrees of freedom: P(chi2 > 27.88) = 0.001 for a uniform source. The draws are fixed (no
    // flakiness); a biased or badly mixed stream (e.g. a plain counter) lands far above this.
    const chi2 = (draw: (i: number) => number) => {
      const bins = new Array(10).fill(0);
      for (let i = 0; i < 10000; i++) bins[Math.floor(draw(i) * 10)]++;
      return bins.reduce((s, o) => s + (o - 1000) ** 2 / 1000, 0);
    };
    expect(chi2((i) => uniformFor(42n, i))).toBeLessThan(27.88);
    expect(chi2((i) => uniformFor(BigInt(i), 0))).toBeLessThan(27.88);
    expect(chi2((i) => uniformFor(BigInt(i) * 0x10000n, 1))).toBeLessThan(27.88);
  });
});

describe("lc_sample over a real-sized vocabulary", () => {
  // The sorted walk the header describes, in float64: what the selection-based sampler must reproduce.
  function sortedWalk(l: Float32Array, temperature: number, topK: number, topP: number, u: number): number {
    const order = Array.from(l.keys()).sort((a, b) => l[b] - l[a] || a - b);
    const top = l[order[0]];
    let kept = topK > 0 && topK < l.length ? topK : l.length;
    const p = order.slice(0, kept).map((i) => Math.exp((l[i] - top) / temperature));
    const mass = p.reduce((s, x) => s + x, 0);
    if (topP < 1) {
      let n = 0, before = 0;
      while (n < kept && before < topP * mass) before += p[n++];
      kept = Math.max(n, 1);
    }
    const keptMass = p.slice(0, kept).reduce((s, x) => s + x, 0);
    let cum = 0;
    for (let i = 0; i < kept; i++) if ((cum += p[i]) > u * keptMass) return order[i];
    return order[kept - 1];
  }

  // the reference sorts every row in JS: seconds on a busy 2-core machine, hence the timeout
  test("the same token as the sorted walk for 120 rows of 32,000 logits", () => {
    const vocab = 32000;
    let s = 12345;
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const rows: Row[] = [];
    for (let r = 0; r < 120; r++) {
      // peaked rows (as a trained model's) and flat ones, with repeated values so ties occur
      const spread = r % 3 === 0 ? 12 : 2;
      const logits = Array.from({ length: vocab }, () => Math.fround(Math.round(rnd() * spread * 64) / 64));
      const topK = [0, 1, 40, 1000][r % 4], topP = [1, 0.9, 0.5, 0.99, 0.05][r % 5];
      rows.push({ logits, temperature: [0.3, 0.7, 1, 1.5][r % 4], topK, topP, uniform: Math.fround(rnd()) });
    }
    const { ids } = sample(rows);
    // the kernel reads temperature and top_p as f32 (0.05 as f32 moves a 40-way tie's top_p cut by one token)
    const expected = rows.map((r) => sortedWalk(Float32Array.from(r.logits), Math.fround(r.temperature), r.topK!, Math.fround(r.topP!), r.uniform!));
    // the selection sums in another order than the walk: a token could differ only where u lands
    // within float64 rounding (~1e-16 of the mass) of a boundary, which none of these rows does
    expect([...ids]).toEqual(expected);
  }, 60_000);
});
