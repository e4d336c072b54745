// lc_logit_rules_apply, lc_count_tokens and lc_sample's min_p on the device under test against the
// CPU twin (harness: harness.ts) and against references computed here. The rules' arithmetic is one
// shared header (logit_rules.h) with each product rounded on its own, so the ruled logits must be the
// twin's bytes, and the reference's values, exactly in every dtype; counts are integers; min_p picks must agree except where the float64 walk says a row is
// within MARGIN of a threshold. Skips without a GPU; the emulator runs it in CI.
import { describe, expect } from "bun:test";
import type { NumericDType } from "../../src/native/device.ts";
import { Status } from "../../src/native/ffi.ts";
import { DUT, expectSameBytes, gpuSuite, pairWith, statusOf, rounded, type Pair } from "./harness.ts";
import { ruledRow, type RowRulesSpec } from "../helpers/logit-rules-reference.ts";

const { dut, cpu, gpuTest, rand, randInt, randn } = await gpuSuite("gpu logit rules tests");
const withPair = (body: (p: Pair) => void) => pairWith(dut!, cpu!, body);
const MARGIN = 1e-5;

/** Rows with every mix of rules over a vocabulary of `vocab` (the last row has none); uploads them on both sides. */
function rulesCase(p: Pair, vocab: number, nRows: number) {
  const words = Math.ceil(vocab / 32), nCountRows = nRows + 3;
  const maskRow = Int32Array.from({ length: nRows }, (_, r) => (r % 3 === 0 ? Math.floor(r / 3) : -1));
  const nMaskRows = Math.max(...maskRow) + 1;
  const allowed = Uint32Array.from({ length: nMaskRows * words }, () => (rand() * 2 ** 32) >>> 0); // about half allowed
  const bias = Array.from({ length: nRows }, (_, r) => (r % 2 === 0 ? [] : [...new Set(Array.from({ length: 1 + randInt(40) }, () => randInt(vocab)))].sort((a, b) => a - b)));
  const indptr = new Int32Array(nRows + 1);
  bias.forEach((b, r) => (indptr[r + 1] = indptr[r] + b.length));
  const countRow = Int32Array.from({ length: nRows }, (_, r) => (r % 4 === 3 ? -1 : nCountRows - 1 - r));
  countRow[nRows - 1] = -1;
  maskRow[nRows - 1] = -1;
  const counts = p.from(new Int32Array(nCountRows * vocab)), prompt = p.from(new Int32Array(nCountRows * vocab));
  // prompt and output tokens counted by lc_count_tokens on each side (rows -1 skipped), and here
  const host = [new Int32Array(nCountRows * vocab), new Int32Array(nCountRows * vocab)];
  [counts, prompt].forEach((table, t) => {
    const n = 4000, rows = Int32Array.from({ length: n }, () => countRow[randInt(nRows)]);
    const ids = Int32Array.from({ length: n }, () => (rand() < 0.5 ? randInt(64) : randInt(vocab))); // repeats on the first 64 ids
    p.run((d, P) => d.countTokens({ counts: P(table), nCountRows, vocab, rows: P(p.from(rows)), ids: P(p.from(ids)), n }));
    rows.forEach((row, i) => row >= 0 && host[t][row * vocab + ids[i]]++);
  });
  const values = Float32Array.from(bias.flat(), () => (rand() * 2 - 1) * 100);
  const presence = Float32Array.from({ length: nRows }, () => rand() * 4 - 2), frequency = Float32Array.from({ length: nRows }, () => rand() * 4 - 2);
  const repetition = Float32Array.from({ length: nRows }, () => 0.5 + rand() * 1.5);
  // each row's rules as the shared reference takes them
  const specs: RowRulesSpec[] = Array.from({ length: nRows }, (_, r) => {
    const allowedIds = maskRow[r] < 0 ? undefined : Array.from({ length: vocab }, (_, v) => v).filter((v) => (allowed[maskRow[r] * words + (v >> 5)] >>> (v & 31)) & 1);
    const row = countRow[r];
    return {
      allowed: allowedIds,
      bias: new Map(bias[r].map((id, j) => [id, values[indptr[r] + j]])),
      penalties: row < 0 ? undefined : {
        presence: presence[r], frequency: frequency[r], repetition: repetition[r],
        outputCounts: (v: number) => host[0][row * vocab + v], inPrompt: (v: number) => host[1][row * vocab + v] > 0,
      },
    };
  });
  const tables = {
    maskRow: p.from(maskRow), allowed: p.from(allowed), nMaskRows,
    indptr: p.from(indptr), ids: p.from(Int32Array.from(bias.flat())), values: p.from(values),
    countRow: p.from(countRow), counts, prompt, nCountRows, presence: p.from(presence), frequency: p.from(frequency), repetition: p.from(repetition),
  };
  return { tables, nCountRows, specs };
}

describe(`logit rules on ${DUT} vs the CPU twin`, () => {
  for (const act of ["F16", "BF16", "F32"] as NumericDType[]) {
    gpuTest(`lc_count_tokens + lc_logit_rules_apply ${act}: counts equal, ruled logits the twin's bytes and the reference's values, 37 rows x 32,001 ids`, () => withPair((p) => {
      const vocab = 32001, nRows = 37;
      const { tables: t, specs } = rulesCase(p, vocab, nRows);
      expectSameBytes("output counts", p.bytes(t.counts, "g"), p.bytes(t.counts, "c"), 4);
      expectSameBytes("prompt counts", p.bytes(t.prompt, "g"), p.bytes(t.prompt, "c"), 4);
      const raw = rounded(randn(nRows * vocab, 4), act), logits = p.floats(raw, act);
      const before = p.bytes(logits, "c").slice();
      p.run((d, P) => d.logitRulesApply({ act, logits: P(logits), nRows, vocab, rules: {
        mask: { maskRow: P(t.maskRow), allowed: P(t.allowed), nMaskRows: t.nMaskRows },
        bias: { indptr: P(t.indptr), ids: P(t.ids), values: P(t.values) },
        penalties: { countRow: P(t.countRow), outputCounts: P(t.counts), promptCounts: P(t.prompt), nCountRows: t.nCountRows, presence: P(t.presence), frequency: P(t.frequency), repetition: P(t.repetition) },
      } }));
      const e = act === "F32" ? 4 : 2;
      expectSameBytes(`ruled logits ${act}`, p.bytes(logits, "g"), p.bytes(logits, "c"), e);
      // and both are the reference computed here from the raw logits: the same fp32 steps, rounded once to act
      const got = p.read(logits, act).g;
      for (let r = 0; r < nRows; r++) {
        const want = rounded(ruledRow(raw.subarray(r * vocab, (r + 1) * vocab), specs[r]), act);
        const bad = want.findIndex((w, v) => !Object.is(w, got[r * vocab + v]));
        expect(bad < 0 ? "ok" : `row ${r} token ${bad}: got ${got[r * vocab + bad]}, want ${want[bad]}`).toBe("ok");
      }
      // and the case reaches: most rows changed, the row without rules did not
      const after = p.bytes(logits, "c"), rowBytes = vocab * e;
      const same = (r: number) => Buffer.compare(Buffer.from(after.subarray(r * rowBytes, (r + 1) * rowBytes)), Buffer.from(before.subarray(r * rowBytes, (r + 1) * rowBytes))) === 0;
      expect(same(nRows - 1)).toBe(true);
      expect(Array.from({ length: nRows - 1 }, (_, r) => same(r)).filter(Boolean).length).toBeLessThan(nRows / 4);
    }));
  }

  gpuTest("lc_sample min_p F16: the twin's picks, and the float64 walk's (rows near a threshold excused), vocab 152064", () => withPair((p) => {
    const vocab = 152064, nRows = 12, act = "F16";
    const temps = [1, 1, 0.7, 1.5, 1, 2, 0.5, 1, 1, 1.2, 0.9, 1];
    const minPs = [0.1, 0.5, 0.05, 0.2, 0.9, 0.01, 0.3, 0.95, 0.02, 0.15, 0.4, 0.001];
    const topKs = [0, 0, 50, 0, 0, 0, 10, 0, 0, 1000, 0, 0];
    const logits = randn(nRows * vocab, 3), host = rounded(logits, act);
    const l = p.floats(logits, act), u = Float32Array.from({ length: nRows }, () => rand());
    const ids = p.alloc(nRows * 4), lp = p.alloc(nRows * 4);
    p.run((d, P) => d.sample({
      act, logits: P(l), nRows, vocab, temperature: P(p.from(Float32Array.from(temps))), topK: P(p.from(Int32Array.from(topKs))),
      topP: P(p.from(new Float32Array(nRows).fill(1))), minP: P(p.from(Float32Array.from(minPs))), uniforms: P(p.from(u)), nTop: 0,
      outIds: P(ids), outLogprob: P(lp), outTopIds: null, outTopLogprobs: null,
    }));
    const g = new Int32Array(p.bytes(ids, "g").buffer), c = new Int32Array(p.bytes(ids, "c").buffer);
    for (let r = 0; r < nRows; r++) {
      const want = minPWalk(host.subarray(r * vocab, (r + 1) * vocab), temps[r], topKs[r], minPs[r], u[r]);
      const why = `row ${r} (T ${temps[r]}, min_p ${minPs[r]}, top_k ${topKs[r]}): gpu ${g[r]}, cpu ${c[r]}, float64 ${want.id} of ${want.kept} kept, margin ${want.margin}`;
      if (want.margin < MARGIN) { console.log(`min_p: near-threshold row allowed to differ: ${why}`); continue; }
      expect(why).toBe(why.replace(/gpu \d+, cpu \d+/, `gpu ${want.id}, cpu ${want.id}`));
    }
  }));

  gpuTest("out-of-contract device data: a count row past the table is reported at the next sync, not counted, and clears", () => withPair((p) => {
    const vocab = 100, counts = p.from(new Int32Array(2 * vocab));
    p.g.countTokens({ counts: counts.g, nCountRows: 2, vocab, rows: p.from(Int32Array.from([5, 1])).g, ids: p.from(Int32Array.from([3, 4])).g, n: 2 });
    expect(statusOf(() => p.g.sync())).toBe(Status.InvalidArgument);
    const back = new Int32Array(p.bytes(counts, "g").buffer);
    expect(back.reduce((a, b) => a + b, 0)).toBe(1);
    expect(back[vocab + 4]).toBe(1);
    expect(statusOf(() => p.g.sync())).toBe(Status.Ok);
  }));
});

/** lc_sample's rule at top_p 1, in float64 over fp32 inputs, with how close the pick is to changing. */
function minPWalk(row: Float32Array, temp: number, topK: number, minP: number, u: number) {
  const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
  const top = row[order[0]], t = Math.fround(temp), threshold = Math.fround(Math.log(Math.fround(minP)));
  const scaled = (i: number) => Math.fround(Math.fround(row[i] - top) / t);
  let kept = order.slice(0, topK > 0 ? topK : order.length).filter((i) => scaled(i) >= threshold);
  // the last kept and the first dropped token: one within 1e-5 of the cut may be kept by one backend only
  const cutMargin = Math.min(...[order[kept.length - 1], order[kept.length]].filter((i) => i !== undefined).map((i) => Math.abs(scaled(i) - threshold)));
  const w = kept.map((i) => Math.exp((row[i] - top) / t)), mass = w.reduce((a, b) => a + b, 0);
  const target = Math.fround(u) * mass;
  let cum = 0;
  for (let k = 0; k < kept.length; k++) {
    const before = cum;
    cum += w[k];
    if (cum > target) return { id: kept[k], kept: kept.length, margin: Math.min(cutMargin, (target - before) / mass, (cum - target) / mass) };
  }
  return { id: kept[kept.length - 1], kept: kept.length, margin: 0 };
}
