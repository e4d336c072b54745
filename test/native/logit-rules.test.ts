// lc_logit_rules_apply and lc_count_tokens (loracuda.h) on the CPU library, against the rules
// computed here from the raw logits; then lc_sample over the ruled logits against the distribution
// the reference gives (greedy and seeded), each row of one call with its own rules.
import { afterAll, describe, expect, test } from "bun:test";
import { Device, type DevPtr, type LogitRulesTables, type NativeError } from "../../src/native/device.ts";
import { thrown } from "../helpers/thrown.ts";
import { Status } from "../../src/native/ffi.ts";
import { ruledRow } from "../helpers/logit-rules-reference.ts";

const device = await Device.open("cpu");
afterAll(() => device.close());

const bufs: DevPtr[] = [];
const put = (a: Float32Array | Int32Array | Uint32Array) => {
  const p = device.alloc(Math.max(4, a.byteLength));
  device.upload(p, a);
  bufs.push(p);
  return p;
};
const freeAll = () => bufs.splice(0).forEach((p) => device.free(p));
const f = Math.fround;

interface RowSpec {
  allowed?: number[];
  bias?: Map<number, number>;
  penalties?: { presence: number; frequency: number; repetition: number; prompt: number[]; output: number[] };
}

/** The header's rules from this row's spec (the shared reference, test/helpers/logit-rules-reference.ts). */
function reference(raw: Float32Array, spec: RowSpec): Float32Array {
  const counts = new Map<number, number>();
  for (const id of spec.penalties?.output ?? []) counts.set(id, (counts.get(id) ?? 0) + 1);
  const inPrompt = new Set(spec.penalties?.prompt ?? []), p = spec.penalties;
  return ruledRow(raw, {
    allowed: spec.allowed, bias: spec.bias,
    penalties: p && { ...p, outputCounts: (v) => counts.get(v) ?? 0, inPrompt: (v) => inPrompt.has(v) },
  });
}

/** Applies the rows' rules on the twin (counts built with lc_count_tokens); returns the ruled logits and the count tables. */
function applyRules(raw: Float32Array, vocab: number, specs: RowSpec[]) {
  const n = specs.length, words = Math.ceil(vocab / 32), nCountRows = n + 2;
  const logits = put(raw.slice());
  const rules: LogitRulesTables = {};
  if (specs.some((s) => s.allowed)) {
    const allowed = new Uint32Array(n * words), maskRow = new Int32Array(n).fill(-1);
    let m = 0;
    specs.forEach((s, r) => {
      if (!s.allowed) return;
      for (const v of s.allowed) allowed[m * words + (v >> 5)] |= 1 << (v & 31);
      maskRow[r] = m++;
    });
    rules.mask = { maskRow: put(maskRow), allowed: put(allowed), nMaskRows: m };
  }
  if (specs.some((s) => s.bias)) {
    const entries = specs.map((s) => [...(s.bias ?? [])].sort((a, b) => a[0] - b[0]));
    const indptr = new Int32Array(n + 1);
    entries.forEach((e, r) => (indptr[r + 1] = indptr[r] + e.length));
    rules.bias = { indptr: put(indptr), ids: put(Int32Array.from(entries.flat(), (e) => e[0])), values: put(Float32Array.from(entries.flat(), (e) => e[1])) };
  }
  const output = put(new Int32Array(nCountRows * vocab)), prompt = put(new Int32Array(nCountRows * vocab));
  if (specs.some((s) => s.penalties)) {
    // row r's counts live in table row nCountRows - 1 - r: the mapping is read, not assumed
    const countRow = Int32Array.from(specs, (s, r) => (s.penalties ? nCountRows - 1 - r : -1));
    specs.forEach((s, r) => {
      if (!s.penalties) return;
      for (const [table, ids] of [[prompt, s.penalties.prompt], [output, s.penalties.output]] as const) {
        device.countTokens({ counts: table, nCountRows, vocab, rows: put(new Int32Array(ids.length).fill(countRow[r])), ids: put(Int32Array.from(ids)), n: ids.length });
      }
    });
    const per = (k: "presence" | "frequency" | "repetition", off: number) => put(Float32Array.from(specs, (s) => s.penalties?.[k] ?? off));
    rules.penalties = {
      countRow: put(countRow), outputCounts: output, promptCounts: prompt, nCountRows,
      presence: per("presence", 0), frequency: per("frequency", 0), repetition: per("repetition", 1),
    };
  }
  device.logitRulesApply({ act: "F32", logits, nRows: n, vocab, rules });
  const got = new Float32Array(n * vocab), outCounts = new Int32Array(nCountRows * vocab);
  device.download(logits, got);
  device.download(output, outCounts);
  return { logits, got, outCounts, nCountRows };
}

function randomLogits(n: number, scale: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  return Float32Array.from({ length: n }, () => f((rand() * 2 - 1) * scale));
}

describe("lc_logit_rules_apply on the CPU twin", () => {
  const vocab = 1000;
  const prompt = [5, 17, 17, 400, 999, 3], output = [17, 17, 17, 42, 600, 5, 42];
  const specs: RowSpec[] = [
    {},
    { allowed: [0, 31, 32, 33, 500, 999] },
    { bias: new Map([[3, 5.5], [999, -100], [0, 0.25], [640, 100]]) },
    { penalties: { presence: 0.7, frequency: 0.4, repetition: 1, prompt, output } },
    { penalties: { presence: 0, frequency: 0, repetition: 1.3, prompt, output }, bias: new Map([[17, 2], [42, -1]]), allowed: [3, 5, 17, 42, 600, 601] },
    { penalties: { presence: -1.5, frequency: -0.25, repetition: 0.8, prompt: [1, 2, 3], output: [3, 3, 700] } },
  ];
  const raw = randomLogits(specs.length * vocab, 6, 7);
  const { got, outCounts, nCountRows } = applyRules(raw, vocab, specs);
  afterAll(freeAll);

  // F32 activations: the same fp32 operations in the same order, so every value must be identical
  specs.forEach((spec, r) => {
    test(`row ${r} (${Object.keys(spec).join(", ") || "no rules"}): every logit equals the reference bit for bit`, () => {
      const want = reference(raw.subarray(r * vocab, (r + 1) * vocab), spec);
      expect(Array.from(got.subarray(r * vocab, (r + 1) * vocab))).toEqual(Array.from(want));
    });
  });

  test("the rows differ from the raw logits where (and only where) a rule reaches", () => {
    const changed = (r: number) => got.subarray(r * vocab, (r + 1) * vocab).filter((v, i) => v !== raw[r * vocab + i]).length;
    expect(changed(0)).toBe(0);
    expect(changed(1)).toBe(vocab - 6);
    expect(changed(2)).toBe(4);
    expect(changed(3)).toBe(new Set(output).size); // presence and frequency: generated tokens only, not the prompt
    expect(changed(5)).toBe(new Set([1, 2, 3, 700]).size); // repetition: prompt and output
  });

  test("lc_count_tokens: each penalised row's table row holds its tokens' counts; other rows are zero", () => {
    specs.forEach((spec, r) => {
      const row = nCountRows - 1 - r, counts = outCounts.subarray(row * vocab, (row + 1) * vocab);
      const want = new Int32Array(vocab);
      for (const id of spec.penalties?.output ?? []) want[id]++;
      expect(Array.from(counts)).toEqual(Array.from(want));
    });
    expect(outCounts.subarray(0, 2 * vocab).every((c) => c === 0)).toBe(true);
  });
});

describe("lc_logit_rules_apply / lc_count_tokens refuse out-of-contract input on the twin", () => {
  afterAll(freeAll);
  const vocab = 64, logits = () => put(new Float32Array(2 * vocab));
  const statusOf = (fn: () => void) => (thrown(fn) as NativeError | undefined)?.status ?? Status.Ok;
  test("bias ids outside the vocabulary or not ascending; a count row past the table; a half-set group", () => {
    const bias = (ids: number[]) => ({ indptr: put(Int32Array.from([0, ids.length, ids.length])), ids: put(Int32Array.from(ids)), values: put(new Float32Array(ids.length)) });
    for (const ids of [[64], [-1], [5, 5], [9, 2]]) {
      expect(statusOf(() => device.logitRulesApply({ act: "F32", logits: logits(), nRows: 2, vocab, rules: { bias: bias(ids) } }))).toBe(Status.InvalidArgument);
    }
    const counts = put(new Int32Array(2 * vocab));
    expect(statusOf(() => device.countTokens({ counts, nCountRows: 2, vocab, rows: put(Int32Array.from([2])), ids: put(Int32Array.from([0])), n: 1 }))).toBe(Status.InvalidArgument);
    expect(statusOf(() => device.countTokens({ counts, nCountRows: 2, vocab, rows: put(Int32Array.from([0])), ids: put(Int32Array.from([64])), n: 1 }))).toBe(Status.InvalidArgument);
    const half = { countRow: put(Int32Array.from([0, 0])), outputCounts: counts, promptCounts: counts, nCountRows: 2, presence: 0, frequency: 0, repetition: 0 };
    expect(statusOf(() => device.logitRulesApply({ act: "F32", logits: logits(), nRows: 2, vocab, rules: { penalties: half } }))).toBe(Status.InvalidArgument);
    // a row -1 is not counted, and refusing left the table untouched
    device.countTokens({ counts, nCountRows: 2, vocab, rows: put(Int32Array.from([-1, 1])), ids: put(Int32Array.from([3, 4])), n: 2 });
    const back = new Int32Array(2 * vocab);
    device.download(counts, back);
    expect(back.reduce((a, b) => a + b, 0)).toBe(1);
    expect(back[vocab + 4]).toBe(1);
  });
});
