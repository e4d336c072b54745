// Every CUDA op against the CPU twin on fresh random inputs at real shapes (Llama-3-8B-like: hidden
// 4096, head_dim 128, 32 query / 8 KV heads, intermediate 14336; LoRA ranks 8-128 mixed; a 152k vocab).
// Both backends get the same fp16/bf16-rounded inputs. Skipped, with a printed reason, where no GPU
// or no libloracuda.so exists. LORA_SERVE_GPU_TEST_DEVICE=cpu runs this file with the CPU twin as the
// device under test (a self-check of the harness on machines without a GPU). GPU_TEST_SEED fixes the
// random inputs (the seed in use is printed).
//
// Tolerances. Both sides compute in fp32 from identical inputs; they differ by accumulation order
// (~1e-6 relative) and then round the output once to the activation dtype, where values straddling a
// rounding boundary land one ulp apart. One ulp is at most eps * |x| (fp16 eps 2^-10 = 9.8e-4, bf16
// eps 2^-7 = 7.8e-3). We allow 2 ulp: |gpu - cpu| <= 2 eps (|cpu| + rms(cpu)); the rms term covers
// outputs near zero after cancellation. fp32 outputs (LoRA tmp, mixed-dtype linear): 1e-4, ~30x the
// fp32 accumulation difference over K = 14336 terms. A real bug (wrong mask, scale, slot, rank)
// moves outputs by O(rms), far beyond these bounds.
// Attention gets 4 eps (attentionTolFor): the tensor-core prefill kernel rounds the softmax weights P
// to the activation dtype for P.V (as FlashAttention does), so each weight is off by up to eps/2 and an
// output by up to eps/2 * sum_i w_i |v_i - out|, an error on the scale of V rather than of the output.
// In a prompt's first rows (few keys) outputs can cancel to |out| << |v| while rms(out) is pulled down
// by long rows averaging V: a model of this file's GQA case, P rounded per 64-key tile, came to 0.98
// (f16, 27 seeds) and 0.995 (bf16, 8 seeds) of 2 eps (|out| + rms). A bug still moves outputs by O(rms),
// far beyond 4 eps.
import { describe, expect } from "bun:test";
import { type Device, type DevPtr, type NativeError, type NumericDType } from "../../src/native/device.ts";
import { Status } from "../../src/native/ffi.ts";
import { encodeFloats } from "../../src/model/convert.ts";
import { BYTES, DUT, attentionTolFor, compare, expectClose, gpuSuite, pairWith, rounded, storeTolFor, type Pair, timeMedian } from "./harness.ts";
import { loraCase } from "./lora-case.ts";

// ---------- device under test ----------

const { dut, cpu, gpuTest, timingTest, rand, randInt, randn, shuffle } = await gpuSuite("gpu tests");

/** Runs body with a fresh Pair, freeing its buffers afterwards. */
const withPair = (body: (p: Pair) => void) => pairWith(dut!, cpu!, body);

// ---------- shapes ----------

const HIDDEN = 4096, INTER = 14336, HEADS = 32, KV_HEADS = 8, HEAD_DIM = 128;
const ACTS: ("F16" | "BF16")[] = ["F16", "BF16"];
const N = 300; // tokens of a mixed prefill + decode step

describe(`ops on ${DUT} vs the CPU twin`, () => {
  for (const act of ACTS) {
    gpuTest(`embed ${act}`, () => withPair((p) => {
      const vocab = 4000;
      for (const wt of [act, "F32"] as NumericDType[]) {
        const table = p.floats(randn(vocab * HIDDEN), wt);
        const ids = Int32Array.from({ length: N }, (_, i) => (i === 0 ? 0 : i === 1 ? vocab - 1 : randInt(vocab)));
        const idsB = p.from(ids), out = p.alloc(N * HIDDEN * 2);
        p.poison(out);
        p.run((d, P) => d.embed({ wt, table: P(table), vocab, hidden: HIDDEN, ids: P(idsB), nTokens: N, act, out: P(out) }));
        compare(p, `embed ${wt}->${act}`, out, act, 0); // a copy (one rounding of the same value): exact
      }
    }));

    gpuTest(`rmsnorm ${act}`, () => withPair((p) => {
      for (const wt of [act, "F32"] as NumericDType[]) {
        const x = p.floats(randn(N * HIDDEN, 3), act), w = p.floats(randn(HIDDEN, 0.2).map((v) => 1 + v), wt);
        const out = p.alloc(N * HIDDEN * 2);
        p.poison(out);
        p.run((d, P) => d.rmsnorm({ act, x: P(x), wt, w: P(w), nTokens: N, hidden: HIDDEN, eps: 1e-5, out: P(out) }));
        compare(p, `rmsnorm w ${wt}`, out, act);
      }
    }));

    gpuTest(`linear ${act} (cuBLAS; one row through the GEMV): prefill, decode, accumulate, odd shapes`, () => withPair((p) => {
      // m = 1 with k % 8 == 0 takes gemv.cu (odd n: a warp's second row past the end); k = 4100 stays on cuBLAS
      const shapes = [[257, 4096, 4096, false], [1, INTER, HIDDEN, false], [1, 1001, HIDDEN, true], [1, HIDDEN, INTER, true], [1, 77, 4100, false],
        [64, 1024, INTER, true], [3, 4096, INTER, true], [8, 1000, HIDDEN, false], [9, 1024, HIDDEN, false], [5, 7, 24, true]] as const;
      for (const [m, n, k, accumulate] of shapes) {
        const x = p.floats(randn(m * k), act), w = p.floats(randn(n * k, 1 / Math.sqrt(k)), act);
        const y = p.alloc(m * n * 2);
        if (accumulate) {
          const y0 = encodeFloats(randn(m * n), act);
          p.g.upload(y.g, y0);
          p.c.upload(y.c, y0);
        } else p.poison(y);
        p.run((d, P) => d.linear({ act, x: P(x), wt: act, w: P(w), m, n, k, accumulate, y: P(y) }));
        compare(p, `linear m=${m} n=${n} k=${k}${accumulate ? " accumulate" : ""}`, y, act);
      }
    }));

    gpuTest(`rope_store ${act}: fused q|k|v, RoPE into q and the KV cache, padding rows skipped`, () => withPair((p) => {
      const half = HEAD_DIM / 2, qw = HEADS * HEAD_DIM, kvw = KV_HEADS * HEAD_DIM, slots = 1024 * 16;
      const invFreq = Float32Array.from({ length: half }, (_, i) => 1 / 500000 ** ((2 * i) / HEAD_DIM));
      const positions = Int32Array.from({ length: N }, (_, i) => (i === 0 ? 0 : randInt(8192)));
      for (const [scaling, cacheDt] of [[1, act], [1.2, "F32"]] as [number, NumericDType][]) {
        const qkv = p.floats(randn(N * (qw + 2 * kvw)), act), qOut = p.alloc(N * qw * 2);
        p.poison(qOut);
        const perm = shuffle(Array.from({ length: slots }, (_, i) => i));
        const mapping = p.from(Int32Array.from({ length: N }, (_, t) => (t % 7 === 3 ? -1 : perm[t]))); // -1: padding
        const kc = p.floats(randn(slots * kvw), cacheDt), vc = p.floats(randn(slots * kvw), cacheDt);
        const pos = p.from(positions), inv = p.from(invFreq);
        p.run((d, P) => d.ropeStore({
          act, qkv: P(qkv), positions: P(pos), slotMapping: P(mapping), nTokens: N, nHeads: HEADS, nKvHeads: KV_HEADS, headDim: HEAD_DIM,
          invFreq: P(inv), attentionScaling: scaling, qOut: P(qOut), cacheDtype: cacheDt, kCache: P(kc), vCache: P(vc), cacheSlots: slots,
        }));
        compare(p, `rope_store q scaling ${scaling}`, qOut, act);
        // rotated keys are rounded to act before the cache: one act ulp apart where fp32 rounding (FMA) differs
        compare(p, `rope_store k cache (${cacheDt}) scaling ${scaling}`, kc, cacheDt, storeTolFor(act, cacheDt));
        expect(Buffer.compare(p.bytes(vc, "g"), p.bytes(vc, "c"))).toBe(0); // values: a copy, byte-exact, untouched slots kept
      }
    }));

    gpuTest(`silu_mul, add, gather_rows ${act}`, () => withPair((p) => {
      const gateUp = p.floats(randn(N * 2 * INTER, 2), act), out = p.alloc(N * INTER * 2);
      p.poison(out);
      p.run((d, P) => d.siluMul({ act, gateUp: P(gateUp), nTokens: N, inter: INTER, out: P(out) }));
      compare(p, "silu_mul", out, act);

      const x = p.floats(randn(N * HIDDEN), act), y = p.floats(randn(N * HIDDEN), act);
      p.run((d, P) => d.add({ act, x: P(x), n: N * HIDDEN, y: P(y) }));
      compare(p, "add", y, act);

      const rows = Int32Array.from({ length: 77 }, (_, i) => (i === 0 ? N - 1 : randInt(N)));
      const rowsB = p.from(rows), g = p.alloc(rows.length * HIDDEN * 2);
      p.poison(g);
      p.run((d, P) => d.gatherRows({ act, x: P(x), width: HIDDEN, rows: P(rowsB), nRows: rows.length, xRows: N, out: P(g) }));
      compare(p, "gather_rows", g, act, 0);
    }));

    gpuTest(`attention ${act}: prefill + chunked prefill + decode, paged with holes, GQA 32/8, head_dim 128`, () => withPair((p) => {
      const seqs = [
        { nq: 200, ctx: 200 }, // a whole prompt
        { nq: 64, ctx: 8192 }, // the last chunk of an 8k prompt
        { nq: 1, ctx: 8192 }, // decode at 8k
        { nq: 0, ctx: 50 }, // a sequence with no queries this step
        { nq: 1, ctx: 1 },
        { nq: 1, ctx: 3001 },
        { nq: 17, ctx: 4113 },
      ];
      attentionCase(p, act, act, seqs, { heads: HEADS, kvHeads: KV_HEADS, headDim: HEAD_DIM, blockSize: 16 }, act === "F16" ? [0, 4096] : [0, 37]);
    }));
  }

  for (const act of ACTS) {
    // The tensor-core prefill kernel over many 64-row and 64-key tiles: a chunk of a prompt behind a
    // cached prefix (GQA 32/8), and a prompt batched with a decode row at the Llama-2-7B shape (MHA).
    gpuTest(`attention ${act}: long prefill after a 200-token prefix (GQA 32/8); prompt + decode row (MHA 32/32, block 32)`, () => withPair((p) => {
      attentionCase(p, act, act, [{ nq: 333, ctx: 533 }], { heads: HEADS, kvHeads: KV_HEADS, headDim: HEAD_DIM, blockSize: 16 }, [0, 100]);
      attentionCase(p, act, act, [{ nq: 1, ctx: 700 }, { nq: 150, ctx: 150 }], { heads: 32, kvHeads: 32, headDim: HEAD_DIM, blockSize: 32 }, [0]);
    }));
  }

  gpuTest("attention: head_dim 64, 12 heads over 4 KV heads (group 3), block 32, bf16 cache under f16 activations", () => withPair((p) => {
    const seqs = [{ nq: 100, ctx: 100 }, { nq: 1, ctx: 777 }, { nq: 5, ctx: 2050 }];
    attentionCase(p, "F16", "BF16", seqs, { heads: 12, kvHeads: 4, headDim: 64, blockSize: 32 }, [0, 100]);
  }));

  gpuTest("linear: fp32 activations x bf16 weights (mixed dtypes)", () => withPair((p) => {
    const [m, n, k] = [37, 1000, HIDDEN];
    const x = p.floats(randn(m * k), "F32"), w = p.floats(randn(n * k, 1 / Math.sqrt(k)), "BF16"), y = p.alloc(m * n * 4);
    p.poison(y);
    p.run((d, P) => d.linear({ act: "F32", x: P(x), wt: "BF16", w: P(w), m, n, k, y: P(y) }));
    compare(p, "linear f32 x bf16", y, "F32");
  }));

  for (const act of ACTS) {
    gpuTest(`lora shrink + expand ${act}: ranks 8-128 in one batch, base segment, DoRA`, () => withPair((p) => {
      // Slot ranks (slot 6 holds rank 0: present but empty). Segments: base (-1) prefill, rank-8 prefill,
      // decodes of several ranks, rank 0, rank 128 prefill, then 5 tokens no segment covers.
      const ranks = [64, 8, 128, 16, 32, 8, 0, 128];
      const segs: [number, number][] = [[-1, 40], [1, 100], [0, 1], [2, 57], [3, 1], [6, 3], [4, 7], [-1, 1], [5, 1], [7, 30]];
      const c = { ranks, segs, maxRank: 128, tail: 5 };
      loraCase(p, act, randn, { ...c, inDim: HIDDEN, outDims: [HIDDEN] });
      loraCase(p, act, randn, { ...c, inDim: INTER, outDims: [HIDDEN] }); // down_proj shape
      loraCase(p, act, randn, { ...c, inDim: HIDDEN, outDims: [INTER, INTER] }); // fused gate|up
    }));

    gpuTest(`sample ${act}: greedy, top-k, top-p, temperature, top-20 logprobs, vocab 152064`, () => withPair((p) => {
      sampleCase(p, act);
    }));
  }

  gpuTest("device-side metadata errors surface at the next sync, then clear", () => withPair((p) => {
    const d = p.g, vocab = 10;
    const table = d.alloc(vocab * 8 * 2), ids = d.alloc(4 * 2), out = d.alloc(2 * 8 * 2);
    try {
      d.upload(ids, Int32Array.of(3, vocab));
      expect(() => {
        d.embed({ wt: "F16", table, vocab, hidden: 8, ids, nTokens: 2, act: "F16", out });
        d.sync();
      }).toThrow(/token id/);
      d.sync(); // reported once
    } finally {
      for (const b of [table, ids, out]) d.free(b);
    }
    if (DUT === "cuda") {
      const q = d.alloc(1024);
      try {
        let status: Status | undefined;
        try {
          d.attention({ act: "F16", q, cacheDtype: "F16", kCache: q, vCache: q, cacheSlots: 1, qIndptr: q, contextLens: q, blockTables: q, maxBlocksPerSeq: 1, nSeqs: 1, nTokens: 1, maxQLen: 1, maxContextLen: 1, blockSize: 16, nHeads: 1, nKvHeads: 1, headDim: 96, slidingWindow: 0, scale: 1, out: q });
        } catch (e) { status = (e as NativeError).status; }
        expect(status).toBe(Status.Unsupported);
      } finally { d.free(q); }
    }
  }));

  timingTest("timings (device under test, median of 10 after warm-up)", () => withPair((p) => {
    timings(p.g);
  }));
});

// ---------- attention ----------

interface Geometry { heads: number; kvHeads: number; headDim: number; blockSize: number }

function attentionCase(p: Pair, act: NumericDType, cacheDt: NumericDType, seqs: { nq: number; ctx: number }[], geo: Geometry, windows: number[]): void {
  const { heads, kvHeads, headDim, blockSize: bs } = geo;
  const maxCtx = Math.max(...seqs.map((s) => s.ctx));
  const maxBlocks = Math.ceil(maxCtx / bs) + 3; // a few spare entries per table
  const need = seqs.map((s) => Math.ceil(s.ctx / bs));
  const numBlocks = Math.ceil(need.reduce((a, b) => a + b, 0) * 1.3) + 4; // holes: unused blocks
  const order = shuffle(Array.from({ length: numBlocks }, (_, i) => i)); // non-contiguous, unordered
  const tables = new Int32Array(seqs.length * maxBlocks).fill(-1); // entries past a sequence's blocks must never be read
  let next = 0;
  seqs.forEach((s, i) => { for (let b = 0; b < need[i]; b++) tables[i * maxBlocks + b] = order[next++]; });

  // The cache holds random keys and values where some sequence's position lives and NaN elsewhere
  // (unused blocks, block tails past context_lens), so any stray read poisons the output.
  const slots = numBlocks * bs, width = kvHeads * headDim;
  const kv = [randn(slots * width), randn(slots * width)];
  const live = new Uint8Array(slots);
  seqs.forEach((s, i) => { for (let pos = 0; pos < s.ctx; pos++) live[tables[i * maxBlocks + Math.floor(pos / bs)] * bs + (pos % bs)] = 1; });
  for (const c of kv) for (let sl = 0; sl < slots; sl++) if (!live[sl]) c.fill(NaN, sl * width, (sl + 1) * width);
  const [kc, vc] = kv.map((c) => p.floats(c, cacheDt));

  const nTokens = seqs.reduce((a, s) => a + s.nq, 0);
  const qIndptr = new Int32Array(seqs.length + 1);
  seqs.forEach((s, i) => (qIndptr[i + 1] = qIndptr[i] + s.nq));
  const q = p.floats(randn(nTokens * heads * headDim), act);
  const meta = { qIndptr: p.from(qIndptr), contextLens: p.from(Int32Array.from(seqs, (s) => s.ctx)), blockTables: p.from(tables) };
  const out = p.alloc(nTokens * heads * headDim * BYTES[act]);
  for (const window of windows) {
    p.poison(out);
    p.run((d, P) => d.attention({
      act, q: P(q), cacheDtype: cacheDt, kCache: P(kc), vCache: P(vc), cacheSlots: slots,
      qIndptr: P(meta.qIndptr), contextLens: P(meta.contextLens), blockTables: P(meta.blockTables), maxBlocksPerSeq: maxBlocks,
      nSeqs: seqs.length, nTokens, maxQLen: Math.max(...seqs.map((s) => s.nq)) + 5, maxContextLen: maxCtx + 7, // bounds, not exact
      blockSize: bs, nHeads: heads, nKvHeads: kvHeads, headDim, slidingWindow: window, scale: 1 / Math.sqrt(headDim), out: P(out),
    }));
    compare(p, `attention window ${window}`, out, act, attentionTolFor(act));
  }
}

// ---------- LoRA ----------

// ---------- sampling ----------

/** The twin's rule in float64, with the smallest distance (relative to the mass) between a threshold
 *  and a cumulative sum compared with it. The GPU sums fp32 weights in fp64: its masses differ from
 *  the twin's by ~1e-7 relative (expf vs exp, fp32 rounding of (logit - top) / T), so a pick may flip
 *  only where that distance is tiny. We excuse below MARGIN = 1e-5 (10x the worst case), not the 1e-4
 *  first proposed: at a 152k vocabulary one token holds ~1e-5 of the mass, and 1e-4 would excuse
 *  most rows. */
function referenceSample(row: Float32Array, temp: number, topK: number, topP: number, u: number): { id: number; margin: number } {
  const vocab = row.length;
  if (temp <= 0) {
    let best = 0;
    for (let i = 1; i < vocab; i++) if (row[i] > row[best]) best = i;
    return { id: best, margin: Infinity };
  }
  const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b);
  let kept = topK > 0 && topK < vocab ? topK : vocab;
  const top = row[order[0]], t = Math.fround(temp); // the twin divides by the fp32 temperature in float64
  const pr = order.slice(0, kept).map((i) => Math.exp((row[i] - top) / t));
  const mass = pr.reduce((a, b) => a + b, 0);
  let margin = Infinity;
  // distance of a compared sum from its threshold; an empty sum (0) is exact on every backend
  const dist = (sum: number, target: number, of: number) => (sum === 0 ? Infinity : Math.abs(sum - target) / of);
  if (Math.fround(topP) < 1) {
    const target = Math.fround(topP) * mass;
    let before = 0, n = 0;
    while (n < kept && before < target) {
      margin = Math.min(margin, dist(before, target, mass));
      before += pr[n++];
    }
    margin = Math.min(margin, dist(before, target, mass));
    kept = Math.max(n, 1);
  }
  let keptMass = 0;
  for (let i = 0; i < kept; i++) keptMass += pr[i];
  const target = Math.fround(u) * keptMass;
  let cum = 0;
  for (let i = 0; i < kept; i++) {
    const prev = cum;
    cum += pr[i];
    if (cum > target) return { id: order[i], margin: Math.min(margin, dist(prev, target, keptMass), dist(cum, target, keptMass)) };
  }
  return { id: order[kept - 1], margin: 0 };
}

const MARGIN = 1e-5;

function sampleCase(p: Pair, act: NumericDType): void {
  const vocab = 152064, nTop = 20;
  //              greedy  plain  top-k  top-p  k+p   k=1   p=0   hot    cold  ties  u=0   u~1
  const temps = [0, 1, 0.7, 1, 0.8, 1.3, 1, 1.5, 0.3, 0, 1, 1, 0.9, 1, 0.6, 1];
  const topKs = [0, 0, 50, 0, 40, 1, 0, 0, 0, 0, 0, 1000, 0, 7, 0, 0];
  const topPs = [1, 1, 1, 0.9, 0.8, 1, 0, 1, 0.95, 1, 1, 1, 0.5, 1, 0.99, 0.7];
  const nRows = temps.length;
  const uniforms = Float32Array.from({ length: nRows }, (_, r) => (r === 10 ? 0 : r === 11 ? 0.99999994 : rand()));
  const logits = randn(nRows * vocab, 3);
  for (const r of [9, 13]) { // exact ties at the top: lowest id must win, in argmax and in the top-n order
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    let best = 0;
    for (let i = 1; i < vocab; i++) if (row[i] > row[best]) best = i;
    for (const id of [best + 17, 5, vocab - 1, 99999]) row[id % vocab] = row[best] + 0.5;
  }
  const l = p.floats(logits, act), host = rounded(logits, act);
  const params = { temperature: p.from(Float32Array.from(temps)), topK: p.from(Int32Array.from(topKs)), topP: p.from(Float32Array.from(topPs)), minP: p.from(new Float32Array(nRows)), uniforms: p.from(uniforms) };
  const ids = p.alloc(nRows * 4), lp = p.alloc(nRows * 4), topIds = p.alloc(nRows * nTop * 4), topLp = p.alloc(nRows * nTop * 4);
  for (const b of [ids, lp, topIds, topLp]) p.poison(b);
  p.run((d, P) => d.sample({ act, logits: P(l), nRows, vocab, temperature: P(params.temperature), topK: P(params.topK), topP: P(params.topP), minP: P(params.minP), uniforms: P(params.uniforms), nTop, outIds: P(ids), outLogprob: P(lp), outTopIds: P(topIds), outTopLogprobs: P(topLp) }));

  const idsG = new Int32Array(p.bytes(ids, "g").buffer), idsC = new Int32Array(p.bytes(ids, "c").buffer);
  const topG = new Int32Array(p.bytes(topIds, "g").buffer), topC = new Int32Array(p.bytes(topIds, "c").buffer);
  // Top-n ids: a total order on identical values, so exactly equal; logprobs: lse in fp32-vs-fp64 (~1e-6 of ~12).
  expect(Array.from(topG)).toEqual(Array.from(topC));
  const topLps = p.read(topLp, "F32");
  expectClose("top logprobs", topLps.g, topLps.c, 1e-5);
  const lps = p.read(lp, "F32");
  for (let r = 0; r < nRows; r++) {
    const row = host.subarray(r * vocab, (r + 1) * vocab);
    const ref = referenceSample(row, temps[r], topKs[r], topPs[r], uniforms[r]);
    const why = `row ${r} (T ${temps[r]}, top_k ${topKs[r]}, top_p ${topPs[r]}, u ${uniforms[r]}): gpu ${idsG[r]}, cpu ${idsC[r]}, float64 ${ref.id}, margin ${ref.margin}`;
    if (ref.margin >= MARGIN) {
      if (idsG[r] !== idsC[r] || idsC[r] !== ref.id) throw new Error(`sampled ids differ: ${why}`);
      expect(Math.abs(lps.g[r] - lps.c[r])).toBeLessThan(1e-4 + 1e-5 * Math.abs(lps.c[r]));
    } else console.log(`sample: near-threshold row allowed to differ: ${why}`);
    expect(idsG[r] >= 0 && idsG[r] < vocab).toBe(true);
    expect(Number.isFinite(lps.g[r])).toBe(true);
  }
  // n_top = 0 with NULL top outputs is valid
  p.run((d, P) => d.sample({ act, logits: P(l), nRows, vocab, temperature: P(params.temperature), topK: P(params.topK), topP: P(params.topP), minP: P(params.minP), uniforms: P(params.uniforms), nTop: 0, outIds: P(ids), outLogprob: P(lp), outTopIds: null, outTopLogprobs: null }));
  expect(Array.from(new Int32Array(p.bytes(ids, "g").buffer))).toEqual(Array.from(idsG));
}

// ---------- timings ----------

function timings(d: Device): void {
  const bufs: DevPtr[] = [];
  const alloc = (bytes: number, fill?: Float32Array, dt: NumericDType = "F16") => {
    const b = d.alloc(bytes);
    bufs.push(b);
    if (fill) d.upload(b, encodeFloats(fill, dt));
    return b;
  };
  const time = (name: string, fn: () => void) => timeMedian(d, name, fn);
  try {
    const T = 2048, act = "F16" as const;
    const x = alloc(T * INTER * 2, randn(T * INTER)), w = alloc(INTER * HIDDEN * 2, randn(INTER * HIDDEN, 0.02)), y = alloc(T * INTER * 2);
    time("linear f16 m=2048 n=4096 k=4096", () => d.linear({ act, x, wt: act, w, m: T, n: HIDDEN, k: HIDDEN, y }));
    time("linear f16 m=32 n=14336 k=4096", () => d.linear({ act, x, wt: act, w, m: 32, n: INTER, k: HIDDEN, y }));
    time("linear f16 m=1 n=14336 k=4096 (GEMV)", () => d.linear({ act, x, wt: act, w, m: 1, n: INTER, k: HIDDEN, y }));
    time("linear f16 m=2 n=14336 k=4096 (cuBLAS)", () => d.linear({ act, x, wt: act, w, m: 2, n: INTER, k: HIDDEN, y }));
    time("linear f16 m=8 n=14336 k=4096", () => d.linear({ act, x, wt: act, w, m: 8, n: INTER, k: HIDDEN, y }));
    time("rmsnorm f16 2048x4096", () => d.rmsnorm({ act, x, wt: act, w, nTokens: T, hidden: HIDDEN, eps: 1e-5, out: y }));
    time("silu_mul f16 1024x14336", () => d.siluMul({ act, gateUp: x, nTokens: T / 2, inter: INTER, out: y }));

    // attention: 32 decodes at 4k, and one 2048-token prefill; blocks 16, contiguous tables
    const bs = 16, maxBlocks = 512, width = KV_HEADS * HEAD_DIM, slots = 32 * maxBlocks * bs;
    const kc = alloc(slots * width * 2), vc = alloc(slots * width * 2);
    const q = alloc(T * HEADS * HEAD_DIM * 2, randn(T * HEADS * HEAD_DIM)), out = alloc(T * HEADS * HEAD_DIM * 2);
    const tables = alloc(32 * maxBlocks * 4), qIndptr = alloc(33 * 4), ctxLens = alloc(32 * 4);
    d.upload(tables, Int32Array.from({ length: 32 * maxBlocks }, (_, i) => i));
    const attn = (nSeqs: number, nq: number, ctx: number) => {
      d.upload(qIndptr, Int32Array.from({ length: nSeqs + 1 }, (_, i) => i * nq));
      d.upload(ctxLens, new Int32Array(nSeqs).fill(ctx));
      return () => d.attention({ act, q, cacheDtype: act, kCache: kc, vCache: vc, cacheSlots: slots, qIndptr, contextLens: ctxLens, blockTables: tables, maxBlocksPerSeq: maxBlocks, nSeqs, nTokens: nSeqs * nq, maxQLen: nq, maxContextLen: ctx, blockSize: bs, nHeads: HEADS, nKvHeads: KV_HEADS, headDim: HEAD_DIM, slidingWindow: 0, scale: 0.088, out });
    };
    time("attention decode 32 seqs x ctx 4096", attn(32, 1, 4096));
    time("attention prefill 1 seq x 2048", attn(1, 2048, 2048));

    // LoRA: 32 decode tokens over 8 adapters of rank 64 (4096 -> 4096)
    const r = 64, nSlots = 8, mats = Array.from({ length: nSlots }, () => alloc(r * HIDDEN * 2, randn(r * HIDDEN, 0.02)));
    const ptrs = alloc(nSlots * 8), ranks = alloc(nSlots * 4), scales = alloc(nSlots * 4), segIndptr = alloc(9 * 4), segSlot = alloc(8 * 4), tmp = alloc(T * r * 4);
    d.upload(ptrs, BigUint64Array.from(mats, (m) => BigInt(m)));
    d.upload(ranks, new Int32Array(nSlots).fill(r));
    d.upload(scales, new Float32Array(nSlots).fill(0.5));
    d.upload(segIndptr, Int32Array.from({ length: 9 }, (_, i) => i * 4));
    d.upload(segSlot, Int32Array.from({ length: 8 }, (_, i) => i));
    const seg = { nSlots, segIndptr, segSlot, nSegs: 8, nTokens: 32, maxRank: r };
    const modules = [{ aPtrs: ptrs, bPtrs: ptrs, ranks, scales, outOffset: 0, outDim: HIDDEN }];
    time("lora_shrink 32 tokens x 8 adapters r64 4096", () => d.loraShrink({ act, x, inDim: HIDDEN, wt: act, modules, tmp, ...seg }));
    time("lora_expand 32 tokens x 8 adapters r64 4096", () => d.loraExpand({ act, tmp, wt: act, modules, yWidth: HIDDEN, y, ...seg }));

    // sampling: 32 rows of a 152k vocabulary, top-p + top-k + 20 logprobs
    const vocab = 152064, rows = 32;
    const logits = alloc(rows * vocab * 2, randn(rows * vocab, 3));
    const temp = alloc(rows * 4), topK = alloc(rows * 4), topP = alloc(rows * 4), minP = alloc(rows * 4), uni = alloc(rows * 4);
    d.upload(minP, new Float32Array(rows));
    d.upload(temp, new Float32Array(rows).fill(0.8));
    d.upload(topK, new Int32Array(rows).fill(50));
    d.upload(topP, new Float32Array(rows).fill(0.9));
    d.upload(uni, Float32Array.from({ length: rows }, () => rand()));
    const outIds = alloc(rows * 4), outLp = alloc(rows * 4), tIds = alloc(rows * 20 * 4), tLp = alloc(rows * 20 * 4);
    time("sample 32 x 152064 top-k 50 top-p 0.9 + 20 logprobs", () => d.sample({ act, logits, nRows: rows, vocab, temperature: temp, topK, topP, minP, uniforms: uni, nTop: 20, outIds, outLogprob: outLp, outTopIds: tIds, outTopLogprobs: tLp }));
  } finally {
    for (const b of bufs) d.free(b);
  }
}
