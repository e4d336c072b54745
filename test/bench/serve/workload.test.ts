// The serving benchmark's workload generators and summaries, against their definitions.
import { describe, expect, test } from "bun:test";
import { jainIndex, percentile } from "../../../src/bench/serve/stats.ts";
import { parsePrometheus, tierDelta } from "../../../src/bench/serve/target-metrics.ts";
import { arrivalTimes, lengthSampler, popularity, promptSource, seededRandom } from "../../../src/bench/serve/workload.ts";

describe("popularity", () => {
  test("zipf 1.0 over 200: frequencies follow 1/rank", () => {
    const n = 200, draws = 200_000, pick = popularity(n, 1, seededRandom(3));
    const counts = new Array(n).fill(0);
    for (let i = 0; i < draws; i++) counts[pick()]++;
    const harmonic = Array.from({ length: n }, (_, i) => 1 / (i + 1)).reduce((a, b) => a + b, 0);
    // ranks 1, 2, 10: expected p = 1 / (rank * H_200); binomial sd = sqrt(draws p (1 - p)) < 170; 5 sd allowed
    for (const rank of [1, 2, 10]) expect(Math.abs(counts[rank - 1] - draws / (rank * harmonic))).toBeLessThan(5 * 170);
    expect(counts[0]).toBeGreaterThan(counts[1]);
  });

  test("alpha 0 is uniform", () => {
    const pick = popularity(4, 0, seededRandom(5));
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 40_000; i++) counts[pick()]++;
    // expected 10,000 each, sd ~87
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
  });
});

describe("arrivals", () => {
  const gaps = (burstiness: number) => {
    const t = arrivalTimes(20_001, 10, burstiness, seededRandom(7));
    return t.slice(1).map((x, i) => x - t[i]);
  };
  const meanCv = (xs: number[]) => {
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
    return { mean, cv: sd / mean };
  };

  test("Poisson: exponential gaps, mean 1/rate and coefficient of variation 1", () => {
    const { mean, cv } = meanCv(gaps(1));
    // 20,000 gaps: the mean's standard error is 0.7% of it; allow 3%
    expect(Math.abs(mean - 0.1)).toBeLessThan(0.003);
    expect(Math.abs(cv - 1)).toBeLessThan(0.03);
  });

  test("gamma burstiness 0.25: the same mean, CV 1/sqrt(0.25) = 2", () => {
    const { mean, cv } = meanCv(gaps(0.25));
    expect(Math.abs(mean - 0.1)).toBeLessThan(0.006);
    expect(Math.abs(cv - 2)).toBeLessThan(0.15);
  });

  test("rate inf sends everything at once; bad values are refused", () => {
    expect(arrivalTimes(5, Infinity, 1, seededRandom(1))).toEqual([0, 0, 0, 0, 0]);
    expect(() => arrivalTimes(5, 0, 1, seededRandom(1))).toThrow("rate");
    expect(() => arrivalTimes(5, 1, -1, seededRandom(1))).toThrow("burstiness");
  });
});

describe("lengths and prompts", () => {
  test("N, MIN-MAX, and refusals", () => {
    const r = seededRandom(9);
    expect(lengthSampler("128", "x")(r)).toBe(128);
    const range = lengthSampler("4-6", "x");
    const seen = new Set(Array.from({ length: 200 }, () => range(r)));
    expect([...seen].sort()).toEqual([4, 5, 6]);
    expect(() => lengthSampler("6-4", "--output-len")).toThrow("--output-len");
    expect(() => lengthSampler("abc", "--input-len")).toThrow("--input-len");
  });

  test("synthetic prompts have the asked word count; the same seed gives the same workload", () => {
    const a = promptSource({ inputLen: "10", outputLen: "3" }, seededRandom(1));
    const b = promptSource({ inputLen: "10", outputLen: "3" }, seededRandom(1));
    const p = a();
    expect(p.prompt.split(" ")).toHaveLength(10);
    expect(p.maxTokens).toBe(3);
    expect(b()).toEqual(p);
  });
});

describe("summaries", () => {
  test("percentile interpolates as numpy (linear)", () => {
    // numpy.percentile([1, 2, 3, 4], [50, 90, 99]) = [2.5, 3.7, 3.97]
    expect(percentile([4, 1, 3, 2], 50)).toBeCloseTo(2.5, 12);
    expect(percentile([4, 1, 3, 2], 90)).toBeCloseTo(3.7, 12);
    expect(percentile([4, 1, 3, 2], 99)).toBeCloseTo(3.97, 12);
    expect(percentile([], 50)).toBeNaN();
  });

  test("Jain's index: 1 for equal shares, 1/n when one takes everything", () => {
    expect(jainIndex([3, 3, 3])).toBeCloseTo(1, 12);
    expect(jainIndex([5, 0, 0, 0])).toBeCloseTo(0.25, 12);
    expect(jainIndex([1, 2])).toBeCloseTo(9 / 10, 12);
  });

  test("Prometheus text: labels with escapes, and tier deltas with hit rates", () => {
    const text = [
      "# HELP lora_serve_adapter_loads_total x", "# TYPE lora_serve_adapter_loads_total counter",
      'lora_serve_adapter_loads_total{model="m\\"1",tier="gpu"} 3',
      'lora_serve_adapter_hits_total{model="m",tier="gpu"} 9',
    ].join("\n");
    const s = parsePrometheus(text);
    expect(s[0]).toEqual({ name: "lora_serve_adapter_loads_total", labels: { model: 'm"1', tier: "gpu" }, value: 3 });
    const d = tierDelta({ gpu: { loads: 1, evictions: 0, hits: 1 } }, { gpu: { loads: 3, evictions: 1, hits: 7 } })!;
    expect(d.gpu).toEqual({ loads: 2, evictions: 1, hits: 6, hitRate: 0.75 });
    expect(tierDelta(null, { gpu: { loads: 0, evictions: 0, hits: 0 } })).toBeNull();
  });
});
