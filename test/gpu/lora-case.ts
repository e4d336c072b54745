// One LoRA launch checked against the twin: shrink then expand (plain and DoRA) for 1-3 projections
// of one input (a fused q|k|v or gate|up), over `segs` ([slot, tokens]) plus `tail` uncovered tokens.
import { expect } from "bun:test";
import type { LoraModuleTables, NumericDType } from "../../src/native/device.ts";
import { encodeFloats } from "../../src/model/convert.ts";
import { BYTES, compare, expectSameBytes, tolFor, type Buf, type Pair } from "./harness.ts";

export interface LoraCase {
  inDim: number;
  /** one entry per projection: its output width (columns of y, side by side) */
  outDims: number[];
  /** module 0's rank per slot; module m uses the list rotated by m (per-module ranks, as rank_pattern gives) */
  ranks: number[];
  segs: [number, number][];
  maxRank: number;
  tail: number;
  /** the adapters' dtype (default: act's) */
  wt?: NumericDType;
}

export function loraCase(p: Pair, act: NumericDType, randn: (n: number, std?: number) => Float32Array, c: LoraCase): void {
  const { inDim, outDims, segs, maxRank, tail } = c;
  const wt = c.wt ?? act, nSlots = c.ranks.length, nMods = outDims.length, width = nMods * maxRank;
  const yWidth = outDims.reduce((a, b) => a + b, 0);
  const offsets = outDims.map((_, m) => outDims.slice(0, m).reduce((a, b) => a + b, 0));
  const modRanks = outDims.map((_, m) => c.ranks.map((_, s) => c.ranks[(s + m) % nSlots]));
  const nTokens = segs.reduce((a, s) => a + s[1], 0) + tail;
  const segIndptr = new Int32Array(segs.length + 1);
  segs.forEach((s, i) => (segIndptr[i + 1] = segIndptr[i] + s[1]));
  const rowSlot = new Int32Array(nTokens).fill(-1);
  segs.forEach(([slot], i) => rowSlot.fill(slot, segIndptr[i], segIndptr[i + 1]));
  const rankOf = (m: number, t: number) => (rowSlot[t] >= 0 ? modRanks[m][rowSlot[t]] : 0);

  const tables = outDims.map((outDim, m) => {
    const ranks = modRanks[m];
    return {
      aPtrs: p.pointers(ranks.map((r) => (r ? p.floats(randn(r * inDim, 1 / Math.sqrt(inDim)), wt) : null))),
      bPtrs: p.pointers(ranks.map((r) => (r ? p.floats(randn(outDim * r, 1 / Math.sqrt(r)), wt) : null))),
      doraMag: p.pointers(ranks.map((_, s) => ((s + m) % 3 === 2 ? p.floats(Float32Array.from(randn(outDim, 0.1), (v) => 1 + v), "F32") : null))),
      ranks: p.from(Int32Array.from(ranks)),
      scales: p.from(Float32Array.from(ranks, (r) => (r ? 16 / r : 0))),
    };
  });
  const modules = (P: (b: Buf) => number, dora: boolean): LoraModuleTables[] => tables.map((t, m) => ({
    aPtrs: P(t.aPtrs), bPtrs: P(t.bPtrs), ranks: P(t.ranks), scales: P(t.scales), doraMag: dora ? P(t.doraMag) : null,
    outOffset: offsets[m], outDim: outDims[m],
  }));
  const segIn = p.from(segIndptr), segSlot = p.from(Int32Array.from(segs, (s) => s[0]));
  const seg = (P: (b: Buf) => number) => ({ nSlots, segIndptr: P(segIn), segSlot: P(segSlot), nSegs: segs.length, nTokens, maxRank });
  const what = `${inDim}->[${outDims}], ${segs.length} segments, ${nTokens} tokens`;

  // shrink: written where a row's slot has rank r in module m, columns m*maxRank + (0:r); all else stays poisoned
  const x = p.floats(randn(nTokens * inDim), act), tmp = p.alloc(nTokens * width * 4);
  p.poison(tmp);
  p.run((d, P) => d.loraShrink({ act, x: P(x), inDim, wt, modules: modules(P, false), ...seg(P), tmp: P(tmp) }));
  const written: number[] = [];
  const gotBits = new Uint32Array(p.bytes(tmp, "g").buffer);
  for (let t = 0; t < nTokens; t++)
    for (let m = 0; m < nMods; m++)
      for (let j = 0; j < maxRank; j++) {
        const at = t * width + m * maxRank + j;
        if (j < rankOf(m, t)) written.push(at);
        else if (gotBits[at] !== 0xffffffff) throw new Error(`lora_shrink ${what} wrote tmp[${t}, ${m}:${j}] outside its rank (${rankOf(m, t)})`);
      }
  compare(p, `lora_shrink ${what}`, tmp, "F32", tolFor("F32"), written);

  // expand, from one shared tmp (NaN where it must not be read)
  const tmpHost = randn(nTokens * width, 0.5);
  for (let t = 0; t < nTokens; t++)
    for (let m = 0; m < nMods; m++) for (let j = rankOf(m, t); j < maxRank; j++) tmpHost[t * width + m * maxRank + j] = NaN;
  const tmpIn = p.from(tmpHost);
  for (const dora of [false, true]) {
    const y0 = encodeFloats(randn(nTokens * yWidth), act), y = p.from(y0);
    p.run((d, P) => d.loraExpand({ act, tmp: P(tmpIn), wt, modules: modules(P, dora), ...seg(P), yWidth, y: P(y) }));
    const g = p.bytes(y, "g"), e = BYTES[act];
    for (let t = 0; t < nTokens; t++)
      for (let m = 0; m < nMods; m++) // a module's columns in rows without its adapter (or of rank 0) keep their bytes
        if (rankOf(m, t) === 0) {
          const a = (t * yWidth + offsets[m]) * e, b = a + outDims[m] * e;
          expectSameBytes(`lora_expand ${what}: row ${t} module ${m} without an adapter`, g.subarray(a, b), y0.subarray(a, b));
        }
    compare(p, `lora_expand ${what}${dora ? " DoRA" : ""}`, y, act);
  }
  expect(written.length).toBeGreaterThan(0);
}
