// The ABI v2 ops on the device under test against the CPU twin (harness and tolerances: harness.ts,
// ops.test.ts): lc_add_rmsnorm, lc_fill_random (bit-exact), split-KV attention (vs the twin and vs
// the unsplit path), LoRA segments of many tokens per adapter, and a recorded graph replayed on new
// metadata (bit-exact vs eager), host memory from hostAlloc. Ends with TIME lines for the lead's GPU run. Skips without a GPU;
// LORA_SERVE_GPU_TEST_DEVICE=cpu runs it on the CPU twin (graphs then only check Unsupported).
import { afterAll, describe, expect, test } from "bun:test";
import { type Device, type DevPtr, type NumericDType } from "../../src/native/device.ts";
import { Status } from "../../src/native/ffi.ts";
import { encodeFloats } from "../../src/model/convert.ts";
import { BYTES, DUT, attentionTolFor, compare, expectClose, expectSameBytes, gpuSuite, openCudaSwitchedOff, pairWith, statusOf, storeTolFor, tolFor, type Buf, type Pair, timeMedian } from "./harness.ts";
import { loraCase } from "./lora-case.ts";

const { dut, cpu, gpuTest, timingTest, randInt, randn, shuffle } = await gpuSuite("gpu ops v2 tests");
const withPair = (body: (p: Pair) => void) => pairWith(dut!, cpu!, body);
/** Every speed-up switch (see README): none may change a result. */
const SWITCHES = ["LORA_SERVE_CUDA_PDL", "LORA_SERVE_CUDA_FUSE_GEMV"];
const switchedOff = dut && DUT === "cuda" ? await openCudaSwitchedOff(SWITCHES) : undefined;
afterAll(() => switchedOff?.close());

const HIDDEN = 4096, HEADS = 32, KV_HEADS = 8, HEAD_DIM = 128;
/** A rank-16 q,k,v,o adapter at the Llama-2-7B shape: 32 layers x 4 x 16 x (4096 + 4096) fp16 = 33.6 MB. */
const ADAPTER_BYTES = 32 * 4 * 16 * (HIDDEN + HIDDEN) * 2;
const ACTS: ("F16" | "BF16")[] = ["F16", "BF16"];

// ---------- add_rmsnorm, fill_random ----------

describe(`ops v2 on ${DUT} vs the CPU twin`, () => {
  for (const act of ACTS) {
    gpuTest(`add_rmsnorm ${act}: residual bit-exact, output within 2 ulp, out aliasing x`, () => withPair((p) => {
      const N = 300;
      for (const wt of [act, "F32"] as NumericDType[]) {
        const x = p.floats(randn(N * HIDDEN, 2), act), res = p.floats(randn(N * HIDDEN, 3), act);
        const w = p.floats(randn(HIDDEN, 0.2).map((v) => 1 + v), wt), out = p.alloc(N * HIDDEN * 2);
        p.poison(out);
        p.run((d, P) => d.addRmsnorm({ act, x: P(x), residual: P(res), wt, w: P(w), nTokens: N, hidden: HIDDEN, eps: 1e-5, out: P(out) }));
        // the sum is one fp32 addition rounded once: identical on both
        expectSameBytes(`add_rmsnorm residual w ${wt}`, p.bytes(res, "g"), p.bytes(res, "c"));
        compare(p, `add_rmsnorm out w ${wt}`, out, act);
        p.run((d, P) => d.addRmsnorm({ act, x: P(x), residual: P(res), wt, w: P(w), nTokens: N, hidden: HIDDEN, eps: 1e-5, out: P(x) }));
        expectSameBytes(`add_rmsnorm residual (2nd) w ${wt}`, p.bytes(res, "g"), p.bytes(res, "c"));
        compare(p, `add_rmsnorm out = x w ${wt}`, x, act);
      }
      // a row wider than the kernel's register cache (512 threads x 16)
      const wide = 9000, n = 3;
      const x = p.floats(randn(n * wide), act), res = p.floats(randn(n * wide), act), w = p.floats(randn(wide, 0.1).map((v) => 1 + v), act);
      const out = p.alloc(n * wide * 2);
      p.run((d, P) => d.addRmsnorm({ act, x: P(x), residual: P(res), wt: act, w: P(w), nTokens: n, hidden: wide, eps: 1e-6, out: P(out) }));
      expectSameBytes("add_rmsnorm residual 9000 wide", p.bytes(res, "g"), p.bytes(res, "c"));
      compare(p, "add_rmsnorm out 9000 wide", out, act);
    }));
  }

  // The norms move 16 bytes at a time where hidden % (16 / act bytes) == 0 and every row is 16-byte aligned;
  // an odd width or a row start 2 bytes off takes the scalar path; f32 activations move 4 at a time.
  gpuTest("rmsnorm, add_rmsnorm: scalar path (width 1001, rows 2 bytes off), f32 activations (8200 wide), out aliasing x", () => withPair((p) => {
    const cases: [NumericDType, NumericDType, number, number][] = [["F16", "F32", 1001, 0], ["BF16", "BF16", 4096, 2], ["F32", "F16", 4096, 0], ["F32", "F32", 8200, 0]];
    for (const [act, wt, hidden, off] of cases) {
      const n = 3, pad = off / BYTES[act], what = `${act} w ${wt} hidden ${hidden}${off ? ` at +${off} bytes` : ""}`;
      const idx = Array.from({ length: n * hidden }, (_, i) => pad + i); // the padding element stays poisoned
      const x = p.floats(randn(pad + n * hidden, 2), act), res = p.floats(randn(pad + n * hidden, 3), act);
      const w = p.floats(randn(pad + hidden, 0.2).map((v) => 1 + v), wt), out = p.alloc((pad + n * hidden) * BYTES[act]);
      const args = (P: (b: Buf) => DevPtr, o: Buf) => ({ act, x: P(x) + off, wt, w: P(w) + off, nTokens: n, hidden, eps: 1e-5, out: P(o) + off });
      p.poison(out);
      p.run((d, P) => d.rmsnorm(args(P, out)));
      compare(p, `rmsnorm ${what}`, out, act, tolFor(act), idx);
      p.poison(out);
      p.run((d, P) => d.addRmsnorm({ ...args(P, out), residual: P(res) + off }));
      expectSameBytes(`add_rmsnorm residual ${what}`, p.bytes(res, "g"), p.bytes(res, "c"), BYTES[act]);
      compare(p, `add_rmsnorm out ${what}`, out, act, tolFor(act), idx);
      p.run((d, P) => d.rmsnorm(args(P, x)));
      compare(p, `rmsnorm out = x ${what}`, x, act, tolFor(act), idx);
    }
  }));

  // ---------- one-row linear (gemv.cu), silu_mul ----------

  // The GEMV (a warp per two rows, runs of 32 lanes x 4 sixteen-byte vectors along k) at the shapes
  // of o and down (n 4096, k 11008), an odd n whose last warp holds one row, and long n.
  // k = 11008 is 1376 vectors, 10.75 runs of 32 x 4; k = 2056 is 2 runs and 1 vector: the last run is
  // partial. Tolerance: both sides sum the k products in fp32, in another order (~1e-6
  // relative), and round once to f16 / bf16 (after adding y where accumulating), so outputs land at
  // most an ulp apart: the 2-ulp bound of ops.test.ts.
  for (const act of ACTS) {
    gpuTest(`linear ${act} one row (GEMV): n 4096, 8194, 1001, 20000 with partial runs along k, accumulate`, () => withPair((p) => {
      const shapes = [[4096, 11008, true], [4096, 11008, false], [8194, 2056, true], [1001, 11008, false], [20000, 2056, true]] as const;
      for (const [n, k, accumulate] of shapes) {
        const x = p.floats(randn(k), act), w = p.floats(randn(n * k, 1 / Math.sqrt(k)), act), y = p.alloc(n * 2);
        if (accumulate) p.set(y, encodeFloats(randn(n), act));
        else p.poison(y);
        p.run((d, P) => d.linear({ act, x: P(x), wt: act, w: P(w), m: 1, n, k, accumulate, y: P(y) }));
        compare(p, `gemv n=${n} k=${k}${accumulate ? " accumulate" : ""}`, y, act);
      }
    }));
  }

  // lc_linear_silu_mul / lc_linear_rope_store: at m = 1 the CUDA backend runs one GEMV whose epilogue does
  // the second op (no intermediate written). Both round each dot product to act first and share the second
  // op's expression (gemv.cu, rope.cuh), so on the device under test the one kernel must give lc_linear +
  // the second op's bytes exactly. At m = 3 the two ops run one after the other. Against the twin: each
  // input of the second op may sit an ulp off (fp32 sums in another order, rounded once), and the op rounds
  // once more: within 3 ulp of the product, so twice the 2-ulp bound of a single rounding.
  for (const act of ACTS) {
    gpuTest(`linear_silu_mul ${act}: one kernel at m = 1 equals linear + silu_mul bit for bit; m = 3; vs the twin`, () => withPair((p) => {
      const inter = 1000, k = 2056, tol = 2 * tolFor(act);
      const w = p.floats(randn(2 * inter * k, 1 / Math.sqrt(k)), act);
      for (const m of [1, 3]) {
        const x = p.floats(randn(m * k), act), gateUp = p.alloc(m * 2 * inter * 2), fused = p.alloc(m * inter * 2), apart = p.alloc(m * inter * 2);
        p.poison(fused);
        p.run((d, P) => d.linearSiluMul({ act, x: P(x), wt: act, w: P(w), m, inter, k, gateUp: P(gateUp), out: P(fused) }));
        compare(p, `linear_silu_mul m=${m} vs the twin`, fused, act, tol);
        p.g.linear({ act, x: x.g, wt: act, w: w.g, m, n: 2 * inter, k, y: gateUp.g });
        p.g.siluMul({ act, gateUp: gateUp.g, nTokens: m, inter, out: apart.g });
        expectSameBytes(`linear_silu_mul m=${m}: one op vs linear + silu_mul`, p.bytes(fused, "g"), p.bytes(apart, "g"));
      }
    }));
  }

  // 8 + 2 + 2 heads of 128 (group 4) into an f16, a bf16 and an f32 cache; then the token's slot past the
  // cache: q still written, k and v not, and a device error at the next sync (the twin refuses at the call,
  // so it is given -1 there: the same writes).
  gpuTest("linear_rope_store: one kernel at m = 1 equals linear + rope_store bit for bit (f16, bf16, f32 caches, a bad slot); m = 3; vs the twin", () => withPair((p) => {
    const act = "F16", heads = 8, kvHeads = 2, headDim = 128, half = headDim / 2, k = 1024, slots = 16, tol = 2 * tolFor(act);
    const qw = heads * headDim, kvw = kvHeads * headDim, n = qw + 2 * kvw;
    const w = p.floats(randn(n * k, 1 / Math.sqrt(k)), act);
    const inv = p.from(Float32Array.from({ length: half }, (_, i) => 1 / 10000 ** ((2 * i) / headDim)));
    for (const [m, cacheDt, bad] of [[1, "F16", false], [1, "BF16", false], [1, "F32", false], [1, "F16", true], [3, "BF16", false]] as const) {
      const what = `m=${m} ${cacheDt} cache${bad ? ", bad slot" : ""}`;
      const x = p.floats(randn(m * k), act), qkv = p.alloc(m * n * 2);
      const pos = p.from(Int32Array.from({ length: m }, () => randInt(8192))), mapping = p.from(Int32Array.from([5, 11, -1].slice(0, m)));
      const kvInit = [randn(slots * kvw), randn(slots * kvw)];
      const sides = [0, 1].map(() => ({ q: p.alloc(m * qw * 2), kc: p.floats(kvInit[0], cacheDt), vc: p.floats(kvInit[1], cacheDt) }));
      const args = (P: (b: Buf) => DevPtr, s: (typeof sides)[number]) => ({
        act, positions: P(pos), slotMapping: P(mapping), nHeads: heads, nKvHeads: kvHeads, headDim, invFreq: P(inv),
        attentionScaling: 1.1, qOut: P(s.q), cacheDtype: cacheDt, kCache: P(s.kc), vCache: P(s.vc), cacheSlots: slots,
      } as const);
      const [fused, apart] = sides;
      p.poison(fused.q);
      if (bad) {
        p.g.upload(mapping.g, Int32Array.from([slots + 3]));
        p.c.upload(mapping.c, Int32Array.from([-1]));
        p.g.linearRopeStore({ x: x.g, wt: act, w: w.g, m, k, qkv: qkv.g, ...args((b) => b.g, fused) });
        expect(statusOf(() => p.g.sync())).toBe(Status.InvalidArgument);
        p.c.linearRopeStore({ x: x.c, wt: act, w: w.c, m, k, qkv: qkv.c, ...args((b) => b.c, fused) });
      } else {
        p.run((d, P) => d.linearRopeStore({ x: P(x), wt: act, w: P(w), m, k, qkv: P(qkv), ...args(P, fused) }));
      }
      compare(p, `linear_rope_store q, ${what} vs the twin`, fused.q, act, tol);
      compare(p, `linear_rope_store k cache, ${what} vs the twin`, fused.kc, cacheDt, 2 * storeTolFor(act, cacheDt));
      compare(p, `linear_rope_store v cache, ${what} vs the twin`, fused.vc, cacheDt, storeTolFor(act, cacheDt));
      p.g.linear({ act, x: x.g, wt: act, w: w.g, m, n, k, y: qkv.g });
      p.g.ropeStore({ qkv: qkv.g, nTokens: m, ...args((b) => b.g, apart) });
      if (bad) expect(statusOf(() => p.g.sync())).toBe(Status.InvalidArgument);
      for (const key of ["q", "kc", "vc"] as const)
        expectSameBytes(`linear_rope_store ${key}, ${what}: one op vs linear + rope_store`, p.bytes(fused[key], "g"), p.bytes(apart[key], "g"),
          key === "q" ? 2 : BYTES[cacheDt]);
    }
  }));

  // The same ops on the CUDA backend as it runs by default and with every switch off (no dependent launch;
  // linear + the second op instead of a fused epilogue): the bytes must match.
  if (DUT !== "cuda") console.log(`SKIP gpu ops v2 tests "speed-up switches": they are CUDA's (device under test: ${DUT})`);
  (switchedOff ? gpuTest : test.skip)(`speed-up switches (${SWITCHES.join(", ")} = 0) change no byte: GEMV, fused epilogues, split decode attention at batch 1`, () => pairWith(dut!, switchedOff!, (p) => {
    const act = "F16", k = 11008, n = 4096, inter = 1000, heads = 32, headDim = 128, blockSize = 16;
    const x = p.floats(randn(k), act), w = p.floats(randn(n * k, 1 / Math.sqrt(k)), act), y = p.alloc(n * 2);
    p.run((d, P) => d.linear({ act, x: P(x), wt: act, w: P(w), m: 1, n, k, y: P(y) }));
    expectSameBytes("gemv n 4096 k 11008", p.bytes(y, "g"), p.bytes(y, "c"));
    const gateUp = p.alloc(2 * inter * 2), mlp = p.alloc(inter * 2);
    p.run((d, P) => d.linearSiluMul({ act, x: P(x), wt: act, w: P(w), m: 1, inter, k, gateUp: P(gateUp), out: P(mlp) }));
    expectSameBytes("linear_silu_mul", p.bytes(mlp, "g"), p.bytes(mlp, "c"));
    const kvw = 8 * headDim, slots = 32, inv = p.from(Float32Array.from({ length: headDim / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / headDim)));
    const qOut = p.alloc(heads * headDim * 2), kc = p.floats(randn(slots * kvw), act), vc = p.floats(randn(slots * kvw), act), qkv = p.alloc((heads + 16) * headDim * 2);
    const pos = p.from(Int32Array.from([4321])), mapping = p.from(Int32Array.from([9])), kq = 1024;
    const xq = p.floats(randn(kq), act), wq = p.floats(randn((heads + 16) * headDim * kq, 1 / Math.sqrt(kq)), act);
    p.run((d, P) => d.linearRopeStore({
      act, x: P(xq), wt: act, w: P(wq), m: 1, k: kq, qkv: P(qkv), positions: P(pos), slotMapping: P(mapping), nHeads: heads, nKvHeads: 8, headDim,
      invFreq: P(inv), attentionScaling: 1, qOut: P(qOut), cacheDtype: act, kCache: P(kc), vCache: P(vc), cacheSlots: slots,
    }));
    for (const [what, b] of [["q", qOut], ["k cache", kc], ["v cache", vc]] as const) expectSameBytes(`linear_rope_store ${what}`, p.bytes(b, "g"), p.bytes(b, "c"));
    // one sequence at 1000 keys over 32 heads (Llama-2-7B): 16 chunks of 64, a grid of 512 blocks
    const inp = attentionInputs(p, act, act, [{ nq: 1, ctx: 1000 }], { heads, kvHeads: heads, headDim, blockSize });
    const maxContextLen = inp.maxCtx + 7;
    const wsBytes = p.g.attentionWorkspaceBytes({ nTokens: 1, nSeqs: 1, maxQLen: 1, maxContextLen, nHeads: heads, headDim });
    const ws = p.alloc(Math.max(16, wsBytes));
    p.run((d, P) => d.attention({
      act, q: P(inp.q), cacheDtype: act, kCache: P(inp.kc), vCache: P(inp.vc), cacheSlots: inp.slots,
      qIndptr: P(inp.meta.qIndptr), contextLens: P(inp.meta.contextLens), blockTables: P(inp.meta.blockTables), maxBlocksPerSeq: inp.maxBlocks,
      nSeqs: 1, nTokens: 1, maxQLen: 1, maxContextLen, blockSize, nHeads: heads, nKvHeads: heads, headDim, slidingWindow: 0,
      scale: 1 / Math.sqrt(headDim), out: P(inp.out), workspace: P(ws), workspaceBytes: wsBytes,
    }));
    expectSameBytes("decode attention, 1 sequence x 1000 keys, split", p.bytes(inp.out, "g"), p.bytes(inp.out, "c"));
  }));

  // silu_mul moves 16 bytes a thread where inter % (16 / act bytes) == 0 and both pointers are 16-byte
  // aligned, else one value; both paths do the same fp32 math per element, so on the device under test
  // they agree bit for bit (same inputs, one element apart). Against the twin (the same formula over
  // std::exp): bit-exact under the emulator, whose expf is the host's; a GPU's expf is within 2 fp32 ulp,
  // so its outputs land at most an ulp apart after rounding: the 2-ulp bound.
  gpuTest("silu_mul: 16-byte path (inter 11008; f16, bf16, f32) bit-identical to the scalar one (rows one element off); odd inter 1001", () => withPair((p) => {
    const nTokens = 5;
    for (const act of ["F16", "BF16", "F32"] as NumericDType[]) {
      for (const inter of [11008, 1001]) {
        const what = `silu_mul ${act} inter ${inter}`, b = BYTES[act], v = randn(nTokens * 2 * inter, 2);
        const gateUp = p.floats(v, act), out = p.alloc(nTokens * inter * b);
        const padded = new Float32Array(1 + v.length);
        padded.set(v, 1);
        const gateUpOff = p.floats(padded, act), outOff = p.alloc((1 + nTokens * inter) * b);
        p.poison(out);
        p.poison(outOff);
        p.run((d, P) => d.siluMul({ act, gateUp: P(gateUp), nTokens, inter, out: P(out) }));
        p.run((d, P) => d.siluMul({ act, gateUp: P(gateUpOff) + b, nTokens, inter, out: P(outOff) + b }));
        expectSameBytes(`${what}: aligned vs one element off`, p.bytes(out, "g"), p.bytes(outOff, "g").subarray(b), b);
        if (process.env.LORA_SERVE_GPU_EMULATED) expectSameBytes(`${what} vs the twin`, p.bytes(out, "g"), p.bytes(out, "c"), b);
        else compare(p, what, out, act);
      }
    }
  }));

  // Blocks of 128 threads hold whole heads (16 of 128 with 16-byte accesses); an odd half takes the scalar path.
  gpuTest("rope_store: 14 + 2 + 2 heads of 128 (a part-filled block), f32 cache; 5 + 3 + 3 heads of 2100 (scalar, over 1024 pairs); padding; a bad slot is reported, q still written", () => withPair((p) => {
    const shapes: [number, number, number, NumericDType][] = [[14, 2, 128, "F32"], [5, 3, 2100, "F16"]];
    for (const [heads, kvHeads, headDim, cacheDt] of shapes) {
      const act = "BF16", half = headDim / 2, n = 4, slots = 64, what = `${heads}/${kvHeads} heads of ${headDim}`;
      const qw = heads * headDim, kvw = kvHeads * headDim;
      const inv = p.from(Float32Array.from({ length: half }, (_, i) => 1 / 10000 ** ((2 * i) / headDim)));
      const pos = p.from(Int32Array.from({ length: n }, () => randInt(8192))), mapping = p.from(Int32Array.from([7, -1, 30, 63]));
      const qkv = p.floats(randn(n * (qw + 2 * kvw)), act), qOut = p.alloc(n * qw * 2);
      const kc = p.floats(randn(slots * kvw), cacheDt), vc = p.floats(randn(slots * kvw), cacheDt);
      const args = (P: (b: Buf) => DevPtr) => ({
        act, qkv: P(qkv), positions: P(pos), slotMapping: P(mapping), nTokens: n, nHeads: heads, nKvHeads: kvHeads, headDim,
        invFreq: P(inv), attentionScaling: 1.1, qOut: P(qOut), cacheDtype: cacheDt, kCache: P(kc), vCache: P(vc), cacheSlots: slots,
      } as const);
      p.poison(qOut);
      p.run((d, P) => d.ropeStore(args(P)));
      compare(p, `rope_store q, ${what}`, qOut, act);
      compare(p, `rope_store k cache, ${what}`, kc, cacheDt, storeTolFor(act, cacheDt));
      expectSameBytes(`rope_store v cache, ${what}`, p.bytes(vc, "g"), p.bytes(vc, "c"), BYTES[cacheDt]);
      // token 2's slot past the cache: the GPU skips its keys and values and says so at the next sync (the
      // twin refuses at the call, so it is given -1 there: the same writes)
      p.g.upload(mapping.g, Int32Array.from([7, -1, slots, 63]));
      p.c.upload(mapping.c, Int32Array.from([7, -1, -1, 63]));
      p.poison(qOut);
      p.g.ropeStore(args((b) => b.g));
      expect(statusOf(() => p.g.sync())).toBe(Status.InvalidArgument);
      p.c.ropeStore(args((b) => b.c));
      compare(p, `rope_store q (bad slot), ${what}`, qOut, act);
      compare(p, `rope_store k cache (bad slot), ${what}`, kc, cacheDt, storeTolFor(act, cacheDt));
      expectSameBytes(`rope_store v cache (bad slot), ${what}`, p.bytes(vc, "g"), p.bytes(vc, "c"), BYTES[cacheDt]);
    }
  }));

  gpuTest("fill_random: identical values on both backends (fp32 exactly, fp16 / bf16 after rounding)", () => withPair((p) => {
    const n = 1_000_003;
    for (const dt of ["F32", "F16", "BF16"] as NumericDType[])
      for (const seed of [0n, 42n, (1n << 64n) - 1n]) {
        const b = p.alloc(n * BYTES[dt]);
        p.poison(b);
        p.run((d, P) => d.fillRandom({ dtype: dt, ptr: P(b), n, seed, scale: 0.37 }));
        expectSameBytes(`fill_random ${dt} seed ${seed}`, p.bytes(b, "g"), p.bytes(b, "c"), BYTES[dt]);
      }
  }));

  // ---------- split-KV attention ----------

  for (const act of ACTS) {
    gpuTest(`attention ${act} with workspace (split-KV): decode at 1..8192 mixed with prefill rows, GQA 32/8`, () => withPair((p) => {
      // (sizes bounded by the twin's time: ~1 us per query head and key on the GPU host)
      const seqs = act === "F16"
        ? [{ nq: 1, ctx: 1 }, { nq: 1, ctx: 8192 }, { nq: 1, ctx: 129 }, { nq: 12, ctx: 6000 }, { nq: 17, ctx: 1500 },
            { nq: 0, ctx: 50 }, { nq: 40, ctx: 40 }, { nq: 1, ctx: 2000 }, { nq: 3, ctx: 4096 }, { nq: 1, ctx: 4097 }]
        : [{ nq: 1, ctx: 8192 }, { nq: 9, ctx: 300 }, { nq: 1, ctx: 2 }, { nq: 2, ctx: 6000 }, { nq: 1, ctx: 1025 }];
      const geo = { heads: HEADS, kvHeads: KV_HEADS, headDim: HEAD_DIM, blockSize: 16 };
      if (act === "F16") splitAttentionCase(p, act, act, seqs, geo, [0, 37], false);
      else splitAttentionCase(p, act, act, seqs, geo, [0, 100], true);
    }));
  }

  gpuTest("attention with workspace: MHA 32/32 (Llama-2-7B) decode, 16 sequences up to 8192", () => withPair((p) => {
    const seqs = Array.from({ length: 16 }, (_, i) => ({ nq: 1, ctx: i === 0 ? 8192 : i === 1 ? 1 : 1 + randInt(3000) }));
    splitAttentionCase(p, "F16", "F16", seqs, { heads: 32, kvHeads: 32, headDim: 128, blockSize: 16 }, [0], false);
  }));

  for (const act of ACTS) {
    gpuTest(`attention ${act} decode steps (max_q_len 1): MHA, GQA 32/8 with windows, groups 2 and 8, head_dim 64 group 3 under a bf16 cache`, () => withPair((p) => {
      const seqs = [{ nq: 1, ctx: 3000 }, { nq: 1, ctx: 1 }, { nq: 0, ctx: 50 }, { nq: 1, ctx: 129 }, { nq: 1, ctx: 700 }, { nq: 1, ctx: 17 }];
      splitAttentionCase(p, act, act, seqs, { heads: 32, kvHeads: 32, headDim: 128, blockSize: 16 }, [0], false, true);
      splitAttentionCase(p, act, act, seqs, { heads: 32, kvHeads: 8, headDim: 128, blockSize: 16 }, [0, 37, 300], true, true);
      splitAttentionCase(p, act, act, seqs.slice(0, 4), { heads: 8, kvHeads: 4, headDim: 128, blockSize: 32 }, [0], false, true);
      splitAttentionCase(p, act, act, seqs.slice(0, 4), { heads: 16, kvHeads: 2, headDim: 64, blockSize: 16 }, [0], false, true);
      if (act === "F16") splitAttentionCase(p, act, "BF16", seqs, { heads: 12, kvHeads: 4, headDim: 64, blockSize: 32 }, [0, 500], true, true);
    }));
  }

  gpuTest("attention decode with workspace: a sequence whose block table points outside the cache gets zeros and a device error; its neighbours and the next call do not notice", () => withPair((p) => {
    // sequence 1 spans 11 chunks, none with a valid key: the combine sees no key at all (the twin refuses such a table)
    const act = "F16", heads = 32, kvHeads = 8, headDim = 128, blockSize = 16, width = heads * headDim;
    const inp = attentionInputs(p, act, act, [{ nq: 1, ctx: 3000 }, { nq: 1, ctx: 700 }, { nq: 1, ctx: 1 }], { heads, kvHeads, headDim, blockSize });
    const maxContextLen = inp.maxCtx + 7;
    const wsBytes = p.g.attentionWorkspaceBytes({ nTokens: 3, nSeqs: 3, maxQLen: 1, maxContextLen, nHeads: heads, headDim });
    const ws = p.alloc(Math.max(16, wsBytes));
    const call = (d: Device, P: (b: Buf) => DevPtr) => d.attention({
      act, q: P(inp.q), cacheDtype: act, kCache: P(inp.kc), vCache: P(inp.vc), cacheSlots: inp.slots,
      qIndptr: P(inp.meta.qIndptr), contextLens: P(inp.meta.contextLens), blockTables: P(inp.meta.blockTables), maxBlocksPerSeq: inp.maxBlocks,
      nSeqs: 3, nTokens: 3, maxQLen: 1, maxContextLen, blockSize, nHeads: heads, nKvHeads: kvHeads, headDim, slidingWindow: 0,
      scale: 1 / Math.sqrt(headDim), out: P(inp.out), workspace: P(ws), workspaceBytes: wsBytes,
    });
    const good = new Int32Array(p.bytes(inp.meta.blockTables, "c").buffer);
    const bad = good.slice().fill(1 << 28, inp.maxBlocks, 2 * inp.maxBlocks);
    const rows = (s: number) => Array.from({ length: width }, (_, i) => s * width + i);
    p.g.upload(inp.meta.blockTables.g, bad);
    p.poison(inp.out);
    call(p.g, (b) => b.g);
    expect(() => p.g.sync()).toThrow(/outside the cache/);
    call(p.c, (b) => b.c);
    const got = p.read(inp.out, act).g.subarray(width, 2 * width);
    expect(got.every((x) => x === 0)).toBe(true);
    compare(p, "the sequences beside the bad one", inp.out, act, tolFor(act), [...rows(0), ...rows(2)]);
    p.g.upload(inp.meta.blockTables.g, good);
    p.poison(inp.out);
    p.run(call);
    compare(p, "the next call on the same workspace", inp.out, act);
  }));

  gpuTest("attention with workspace: head_dim 64, group 3, block 32, bf16 cache under f16 activations", () => withPair((p) => {
    const seqs = [{ nq: 1, ctx: 3000 }, { nq: 5, ctx: 2050 }, { nq: 30, ctx: 30 }, { nq: 1, ctx: 64 }];
    splitAttentionCase(p, "F16", "BF16", seqs, { heads: 12, kvHeads: 4, headDim: 64, blockSize: 32 }, [0, 500], true);
  }));

  // ---------- LoRA: many tokens per adapter ----------

  for (const act of ACTS) {
    gpuTest(`lora ${act}: 32 tokens on one rank-16 adapter; mixed segments of 1..70 tokens, ranks 8-128, DoRA`, () => withPair((p) => {
      loraCase(p, act, randn, { inDim: HIDDEN, outDims: [HIDDEN], ranks: [16], segs: [[0, 32]], maxRank: 16, tail: 0 });
      // 264 tokens (over 256: the shrink's 4-rows-per-block variant), segments crossing 64-token tiles
      const ranks = [64, 8, 128, 16, 32, 8, 0, 128];
      const segs: [number, number][] = [[3, 32], [-1, 5], [1, 64], [7, 70], [0, 1], [6, 3], [2, 17], [5, 1], [4, 65], [-1, 2]];
      loraCase(p, act, randn, { inDim: HIDDEN, outDims: [HIDDEN, 1024, 1024], ranks, segs, maxRank: 128, tail: 4 }); // q|k|v, GQA 32/8
      loraCase(p, act, randn, { inDim: 14336, outDims: [HIDDEN], ranks, segs: segs.slice(0, 6), maxRank: 128, tail: 0 }); // down_proj shape
      // in_dim not a multiple of 8 (scalar loads), out_dims not multiples of 128, max_rank above every rank
      loraCase(p, act, randn, { inDim: 4100, outDims: [1000, 77], ranks: [16, 8], segs: [[0, 20], [1, 3], [0, 1]], maxRank: 32, tail: 2 });
    }));

    gpuTest(`lora ${act}: decode-sized batches (per-token kernels): ranks 8-256, odd ranks, empty and base segments, DoRA`, () => withPair((p) => {
      // up to 128 tokens: a block per token. Ranks 24, 48 and 127 (not 8 x a power of two) take the scalar
      // expand; 256 the four-pass vector one; in_dim 4100 the scalar shrink; an empty segment holds no token.
      const ranks = [64, 8, 24, 16, 32, 8, 0, 48];
      const segs: [number, number][] = [[3, 1], [-1, 1], [1, 1], [7, 1], [0, 2], [6, 1], [2, 0], [2, 1], [5, 1], [4, 5], [-1, 1], [0, 1]];
      loraCase(p, act, randn, { inDim: HIDDEN, outDims: [HIDDEN, 1024, 1000], ranks, segs, maxRank: 64, tail: 2 }); // q|k|v-shaped
      loraCase(p, act, randn, { inDim: 4100, outDims: [300], ranks: [256, 127, 8], segs: [[1, 2], [0, 1], [2, 3], [0, 1]], maxRank: 256, tail: 1 });
      loraCase(p, act, randn, { inDim: HIDDEN, outDims: [HIDDEN], ranks: [16], segs: [[0, 128]], maxRank: 16, tail: 0 }); // the largest batch it takes
      // x staged in shared memory over 48 KB: Llama-2-70B's down_proj input (28672 x 2 bytes = 56 KB)
      loraCase(p, act, randn, { inDim: 28672, outDims: [512], ranks: [16, 8], segs: [[0, 2], [1, 1]], maxRank: 16, tail: 1 });
      // the same with the other 2-byte weight dtype: its kernel needs its own shared-memory allowance
      loraCase(p, act, randn, { inDim: 28672, outDims: [512], ranks: [16, 8], segs: [[0, 2], [1, 1]], maxRank: 16, tail: 1, wt: act === "F16" ? "BF16" : "F16" });
    }));
  }

  // A segment out of contract (a slot >= n_slots, a rank above max_rank) is skipped and reported at the next
  // sync, while the launch's other segments still apply: the device's result must equal the twin's for the same
  // launch with those segments on the base model (slot -1), which the twin accepts.
  gpuTest("lora: segments out of contract are skipped and reported at the next sync (per-token and per-segment kernels)", () => withPair((p) => {
    const act = "F16", inDim = 256, outDim = 160, maxRank = 16, ranks = [8, 32]; // slot 1: rank 32 > max_rank
    const aPtrs = p.pointers(ranks.map((r) => p.floats(randn(r * inDim, 1 / Math.sqrt(inDim)), act)));
    const bPtrs = p.pointers(ranks.map((r) => p.floats(randn(outDim * r, 1 / Math.sqrt(r)), act)));
    const rankBuf = p.from(Int32Array.from(ranks)), scales = p.from(Float32Array.of(2, 0.5));
    const modules = (P: (b: Buf) => DevPtr) => [{ aPtrs: P(aPtrs), bPtrs: P(bPtrs), ranks: P(rankBuf), scales: P(scales), doraMag: null, outOffset: 0, outDim }];
    // slot 2 >= n_slots, or slot 1 (rank over max_rank), each alone; up to 128 tokens take the per-token kernels
    for (const [bad, nTokens] of [[2, 5], [1, 5], [2, 140], [1, 140]]) {
      const segs = [[0, 1], [bad, 2], [0, nTokens - 3]];
      const indptr = new Int32Array(segs.length + 1);
      segs.forEach((s, i) => (indptr[i + 1] = indptr[i] + s[1]));
      const segIn = p.from(indptr), segSlot = p.alloc(segs.length * 4);
      p.g.upload(segSlot.g, Int32Array.from(segs, (s) => s[0]));
      p.c.upload(segSlot.c, Int32Array.from(segs, (s) => (s[0] === 0 ? 0 : -1)));
      const seg = (P: (b: Buf) => DevPtr) => ({ nSlots: 2, segIndptr: P(segIn), segSlot: P(segSlot), nSegs: segs.length, nTokens, maxRank });
      const goodRows = segs.flatMap((s, i) => (s[0] === 0 ? Array.from({ length: s[1] }, (_, k) => indptr[i] + k) : []));
      const what = `${nTokens} tokens, bad slot ${bad}`;

      const x = p.floats(randn(nTokens * inDim), act), tmp = p.alloc(nTokens * maxRank * 4);
      p.poison(tmp);
      expect(() => {
        p.g.loraShrink({ act, x: x.g, inDim, wt: act, modules: modules((b) => b.g), ...seg((b) => b.g), tmp: tmp.g });
        p.g.sync();
      }).toThrow(/segment out of contract/);
      p.g.sync(); // reported once
      p.c.loraShrink({ act, x: x.c, inDim, wt: act, modules: modules((b) => b.c), ...seg((b) => b.c), tmp: tmp.c });
      // rows of the skipped segments stay poisoned on both sides; the good rows' rank-8 columns were written
      const written = goodRows.flatMap((t) => Array.from({ length: 8 }, (_, j) => t * maxRank + j));
      const unwritten = (b: Uint8Array) => b.filter((_, i) => !written.includes(Math.floor(i / 4)));
      expectSameBytes(`lora_shrink ${what}: tmp outside the good segments`, unwritten(p.bytes(tmp, "g")), unwritten(p.bytes(tmp, "c")), 4);
      compare(p, `lora_shrink ${what}: good segments`, tmp, "F32", tolFor("F32"), written);

      const u = p.from(randn(nTokens * maxRank, 0.5)), y = p.floats(randn(nTokens * outDim), act);
      expect(() => {
        p.g.loraExpand({ act, tmp: u.g, wt: act, modules: modules((b) => b.g), ...seg((b) => b.g), yWidth: outDim, y: y.g });
        p.g.sync();
      }).toThrow(/segment out of contract/);
      p.c.loraExpand({ act, tmp: u.c, wt: act, modules: modules((b) => b.c), ...seg((b) => b.c), yWidth: outDim, y: y.c });
      compare(p, `lora_expand ${what}: bad segments left alone, good ones applied`, y, act);
    }
  }));

  // ---------- host memory (ABI v3) ----------

  gpuTest("hostAlloc: 33.6 MB written through the view round trip via the device; freed views detach", () => {
    const d = dut!, n = ADAPTER_BYTES;
    const src = d.hostAlloc(n), back = d.hostAlloc(n), slot = d.alloc(n);
    try {
      expect(src.every((b) => b === 0)).toBe(true);
      for (let i = 0; i < n; i += 4093) src[i] = (i >>> 12) & 0xff;
      src[n - 1] = 0xa5;
      d.upload(slot, src);
      d.download(slot, back);
      expectSameBytes("pinned upload -> pinned download", back, src, 1);
      const pageable = new Uint8Array(n);
      d.download(slot, pageable);
      expectSameBytes("pinned upload -> pageable download", pageable, src, 1);
    } finally {
      d.hostFree(src);
      d.hostFree(back);
      d.free(slot);
    }
    expect(src.byteLength).toBe(0);
    expect(statusOf(() => d.hostFree(src))).toBe(Status.InvalidArgument);
  });

  // ---------- graphs ----------

  gpuTest("graph: embed -> rmsnorm -> linear -> lora -> attention (split) -> add_rmsnorm recorded once, replayed on new metadata equals eager bit for bit", () => {
    graphCase(dut!);
  });

  gpuTest("graph: refused calls keep the capture; a failing op abandons it and lc_graph_end reports it", () => {
    graphErrorCase(dut!);
  });

  timingTest("timings v2 (device under test, median of 10 after warm-up)", () => {
    timings(dut!);
  });
});

// ---------- attention ----------

interface Geometry { heads: number; kvHeads: number; headDim: number; blockSize: number }
interface Seq { nq: number; ctx: number }

/** A paged cache holding the sequences' keys (NaN everywhere else), queries, metadata; on both sides.
 *  The cache is filled by lc_fill_random (the same values on both backends, and fast). */
function attentionInputs(p: Pair, act: NumericDType, cacheDt: NumericDType, seqs: Seq[], geo: Geometry) {
  const { heads, kvHeads, headDim, blockSize: bs } = geo;
  const maxCtx = Math.max(...seqs.map((s) => s.ctx));
  const maxBlocks = Math.ceil(maxCtx / bs) + 3;
  const need = seqs.map((s) => Math.ceil(s.ctx / bs));
  const numBlocks = Math.ceil(need.reduce((a, b) => a + b, 0) * 1.3) + 4;
  const order = shuffle(Array.from({ length: numBlocks }, (_, i) => i));
  const tables = new Int32Array(seqs.length * maxBlocks).fill(-1);
  let next = 0;
  seqs.forEach((s, i) => { for (let b = 0; b < need[i]; b++) tables[i * maxBlocks + b] = order[next++]; });
  const slots = numBlocks * bs, width = kvHeads * headDim, slotBytes = width * BYTES[cacheDt];
  const [kc, vc] = [0, 1].map(() => {
    const c = p.alloc(slots * slotBytes), seed = randInt(1 << 30);
    p.run((d, P) => d.fillRandom({ dtype: cacheDt, ptr: P(c), n: slots * width, seed, scale: 2 }));
    // NaN (0xFF bytes) in unused blocks and past each sequence's last key: a stray read poisons the output
    const nan = (slot: number, count: number) => p.run((d, P) => d.memset(P(c) + slot * slotBytes, 0xff, count * slotBytes));
    for (let b = next; b < numBlocks; b++) nan(order[b] * bs, bs);
    seqs.forEach((s, i) => { if (s.ctx % bs) nan(tables[i * maxBlocks + need[i] - 1] * bs + (s.ctx % bs), bs - (s.ctx % bs)); });
    return c;
  });
  const nTokens = seqs.reduce((a, s) => a + s.nq, 0);
  const qIndptr = new Int32Array(seqs.length + 1);
  seqs.forEach((s, i) => (qIndptr[i + 1] = qIndptr[i] + s.nq));
  return {
    q: p.floats(randn(nTokens * heads * headDim), act), kc, vc, slots, maxBlocks, maxCtx, nTokens,
    meta: { qIndptr: p.from(qIndptr), contextLens: p.from(Int32Array.from(seqs, (s) => s.ctx)), blockTables: p.from(tables) },
    out: p.alloc(nTokens * heads * headDim * BYTES[act]),
  };
}

/** Split path on the device under test vs the twin and vs its own unsplit path; with largerBound, also
 *  under a max_context_len bound twice the contexts (as a graph recorded for a bucket would see). */
function splitAttentionCase(p: Pair, act: NumericDType, cacheDt: NumericDType, seqs: Seq[], geo: Geometry, windows: number[], largerBound: boolean, decode = false): void {
  const { heads, kvHeads, headDim, blockSize } = geo;
  const inp = attentionInputs(p, act, cacheDt, seqs, geo);
  const nSeqs = seqs.length, nTokens = inp.nTokens;
  // bounds, not exact; a decode step (max_q_len 1) takes the decode kernel, split and whole
  const maxQLen = decode ? 1 : Math.min(64, Math.max(...seqs.map((s) => s.nq)) + 5);
  const call = (d: Device, P: (b: Buf) => DevPtr, out: Buf, window: number, maxContextLen: number, ws?: Buf) =>
    d.attention({
      act, q: P(inp.q), cacheDtype: cacheDt, kCache: P(inp.kc), vCache: P(inp.vc), cacheSlots: inp.slots,
      qIndptr: P(inp.meta.qIndptr), contextLens: P(inp.meta.contextLens), blockTables: P(inp.meta.blockTables), maxBlocksPerSeq: inp.maxBlocks,
      nSeqs, nTokens, maxQLen, maxContextLen, blockSize, nHeads: heads, nKvHeads: kvHeads, headDim, slidingWindow: window,
      scale: 1 / Math.sqrt(headDim), out: P(out), workspace: ws ? P(ws) : undefined, workspaceBytes: ws?.bytes,
    });
  const unsplit = p.alloc(inp.out.bytes);
  for (const bound of largerBound ? [inp.maxCtx + 7, 2 * inp.maxCtx + 100] : [inp.maxCtx + 7]) {
    const wsBytes = p.g.attentionWorkspaceBytes({ nTokens, nSeqs, maxQLen, maxContextLen: bound, nHeads: heads, headDim });
    if (DUT === "cuda") expect(wsBytes).toBeGreaterThan(0); // these bounds must take the split path
    const ws = p.alloc(Math.max(16, wsBytes));
    for (const window of bound === inp.maxCtx + 7 ? windows : [0]) {
      p.poison(inp.out);
      p.run((d, P) => call(d, P, inp.out, window, bound, ws));
      compare(p, `split attention window ${window} bound ${bound}`, inp.out, act);
      // the same device without a workspace (the unsplit kernel, the decode kernel in one chunk, or the
      // prefill kernel past 16 rows a sequence: its softmax weights rounded to act take attentionTolFor)
      p.g.memset(unsplit.g, 0xff, unsplit.bytes);
      call(p.g, (b) => b.g, unsplit, window, bound);
      expectClose(`split vs unsplit window ${window}`, p.read(inp.out, act).g, p.read(unsplit, act).g, attentionTolFor(act));
    }
  }
}

// ---------- graphs ----------

// A decode-like step on one set of buffers. Metadata (ids, segments, context lengths, block tables)
// changes between replays; shapes and bounds do not.
const G = { vocab: 1000, hidden: 1024, heads: 8, headDim: 128, bs: 16, maxCtx: 3000, nSeqs: 8, nSlots: 4, maxRank: 16 };

function graphCase(d: Device): void {
  const act = "F16" as const, { vocab, hidden, heads, headDim, bs, maxCtx, nSeqs, nSlots, maxRank } = G;
  const maxBlocks = Math.ceil(maxCtx / bs), numBlocks = nSeqs * maxBlocks, slots = numBlocks * bs, width = heads * headDim;
  const bufs: DevPtr[] = [];
  const alloc = (bytes: number) => {
    const b = d.alloc(bytes);
    bufs.push(b);
    return b;
  };
  try {
    // weights and caches: filled on the device (fill_random is the same on every backend)
    const rnd = (dt: NumericDType, n: number, scale: number) => {
      const b = alloc(n * BYTES[dt]);
      d.fillRandom({ dtype: dt, ptr: b, n, seed: randInt(1 << 30), scale });
      return b;
    };
    const table = rnd(act, vocab * hidden, 1), normW = rnd(act, hidden, 1), wq = rnd(act, width * hidden, 1 / Math.sqrt(hidden));
    const kCache = rnd(act, slots * width, 1), vCache = rnd(act, slots * width, 1);
    const ranks = [16, 8, 0, 12];
    const aMats = ranks.map((r) => (r ? rnd(act, r * hidden, 1 / Math.sqrt(hidden)) : 0)), bMats = ranks.map((r) => (r ? rnd(act, width * r, 0.3) : 0));
    const put = (data: ArrayBufferView) => {
      const b = alloc(data.byteLength);
      d.upload(b, data);
      return b;
    };
    const lora = {
      aPtrs: put(BigUint64Array.from(aMats, BigInt)), bPtrs: put(BigUint64Array.from(bMats, BigInt)), ranks: put(Int32Array.from(ranks)),
      scales: put(Float32Array.of(2, 1, 0, 0.5)),
    };
    // metadata buffers (contents change per replay), activations, workspace
    const ids = alloc(nSeqs * 4), segIndptr = alloc((nSeqs + 1) * 4), segSlot = alloc(nSeqs * 4);
    const qIndptr = put(Int32Array.from({ length: nSeqs + 1 }, (_, i) => i)), ctxLens = alloc(nSeqs * 4), tables = alloc(nSeqs * maxBlocks * 4);
    const h = alloc(nSeqs * hidden * 2), normed = alloc(nSeqs * hidden * 2), q = alloc(nSeqs * width * 2), tmp = alloc(nSeqs * maxRank * 4);
    const attn = alloc(nSeqs * width * 2), out = alloc(nSeqs * hidden * 2), noise = alloc(nSeqs * hidden * 2);
    const wsBytes = d.attentionWorkspaceBytes({ nTokens: nSeqs, nSeqs, maxQLen: 1, maxContextLen: maxCtx, nHeads: heads, headDim });
    if (DUT === "cuda") expect(wsBytes).toBeGreaterThan(0);
    const ws = alloc(Math.max(16, wsBytes));
    // h holds the embedding, then the residual sum; the others are written once per step
    const outputs: [string, DevPtr, number][] = [["rmsnorm", normed, nSeqs * hidden * 2],
      ["linear+lora", q, nSeqs * width * 2], ["lora tmp", tmp, nSeqs * maxRank * 4], ["attention", attn, nSeqs * width * 2],
      ["embed + add_rmsnorm residual", h, nSeqs * hidden * 2], ["add_rmsnorm out", out, nSeqs * hidden * 2], ["fill_random", noise, nSeqs * hidden * 2]];

    const step = () => {
      d.embed({ wt: act, table, vocab, hidden, ids, nTokens: nSeqs, act, out: h });
      d.rmsnorm({ act, x: h, wt: act, w: normW, nTokens: nSeqs, hidden, eps: 1e-5, out: normed });
      d.linear({ act, x: normed, wt: act, w: wq, m: nSeqs, n: width, k: hidden, y: q });
      const seg = { nSlots, segIndptr, segSlot, nSegs: nSeqs, nTokens: nSeqs, maxRank };
      const modules = [{ aPtrs: lora.aPtrs, bPtrs: lora.bPtrs, ranks: lora.ranks, scales: lora.scales, outOffset: 0, outDim: width }];
      d.loraShrink({ act, x: normed, inDim: hidden, wt: act, modules, tmp, ...seg });
      d.loraExpand({ act, tmp, wt: act, modules, yWidth: width, y: q, ...seg });
      d.attention({ act, q, cacheDtype: act, kCache, vCache, cacheSlots: slots, qIndptr, contextLens: ctxLens, blockTables: tables, maxBlocksPerSeq: maxBlocks, nSeqs, nTokens: nSeqs, maxQLen: 1, maxContextLen: maxCtx, blockSize: bs, nHeads: heads, nKvHeads: heads, headDim, slidingWindow: 0, scale: 1 / Math.sqrt(headDim), out: attn, workspace: ws, workspaceBytes: wsBytes });
      d.addRmsnorm({ act, x: attn, residual: h, wt: act, w: normW, nTokens: nSeqs, hidden, eps: 1e-5, out });
      d.fillRandom({ dtype: act, ptr: noise, n: nSeqs * hidden, seed: 99, scale: 1 });
    };
    /** New metadata: ids, adapters per sequence (sorted into segments), context lengths, shuffled block tables. */
    const upload = (ctxs: number[]) => {
      d.upload(ids, Int32Array.from({ length: nSeqs }, () => randInt(vocab)));
      const slotOf = Array.from({ length: nSeqs }, () => randInt(nSlots + 1) - 1).sort((a, b) => a - b); // -1: base model
      d.upload(segIndptr, Int32Array.from({ length: nSeqs + 1 }, (_, i) => i)); // one segment per sequence
      d.upload(segSlot, Int32Array.from(slotOf));
      d.upload(ctxLens, Int32Array.from(ctxs));
      const perm = shuffle(Array.from({ length: numBlocks }, (_, i) => i));
      d.upload(tables, Int32Array.from({ length: nSeqs * maxBlocks }, (_, i) => perm[i]));
    };
    const snapshot = () => outputs.map(([name, b, bytes]) => {
      const o = new Uint8Array(bytes);
      d.download(b, o);
      return [name, o] as const;
    });
    const poison = () => { for (const [, b, bytes] of outputs) d.memset(b, 0xff, bytes); };

    upload([5, 3000, 1, 700, 2999, 129, 40, 1500]);
    step(); // eager warm-up: kernels and cuBLAS load before the capture
    d.sync();
    if (DUT !== "cuda") {
      expect(statusOf(() => d.graphBegin())).toBe(Status.Unsupported);
      return;
    }
    d.graphBegin();
    step();
    const graph = d.graphEnd();
    try {
      for (const ctxs of [[3000, 1, 17, 2048, 1000, 333, 2999, 64], [1, 1, 1, 1, 1, 2, 3, 4], [2500, 2600, 2700, 2800, 2900, 3000, 100, 2]]) {
        upload(ctxs);
        poison(); // both runs must write every output
        d.graphLaunch(graph);
        d.sync();
        const replay = snapshot();
        poison();
        step();
        d.sync();
        const eager = snapshot();
        replay.forEach(([name, bytes], i) => expectSameBytes(`graph replay vs eager (contexts ${ctxs.join(",")}): ${name}`, bytes, eager[i][1], name === "lora tmp" ? 4 : 2));
      }
    } finally {
      d.graphDestroy(graph);
    }
  } finally {
    for (const b of bufs) d.free(b);
  }
}

function graphErrorCase(d: Device): void {
  if (DUT !== "cuda") {
    expect(statusOf(() => d.graphBegin())).toBe(Status.Unsupported);
    return;
  }
  const n = 1024, a = d.alloc(n * 2), b = d.alloc(n * 2), host = d.hostAlloc(64);
  try {
    d.fillRandom({ dtype: "F16", ptr: a, n, seed: 1, scale: 1 });
    // uploads, downloads, syncs, allocs and frees are refused while recording; the capture goes on
    d.graphBegin();
    d.copy(b, a, n * 2);
    expect(statusOf(() => d.upload(b, new Uint8Array(8)))).toBe(Status.InvalidArgument);
    expect(() => d.sync()).toThrow(/recording/);
    expect(statusOf(() => d.alloc(64))).toBe(Status.InvalidArgument);
    expect(statusOf(() => d.download(b, new Uint8Array(8)))).toBe(Status.InvalidArgument);
    expect(statusOf(() => d.hostAlloc(64))).toBe(Status.InvalidArgument);
    expect(statusOf(() => d.hostFree(host))).toBe(Status.InvalidArgument);
    expect(host.byteLength).toBe(64); // still allocated
    d.add({ act: "F16", x: a, n, y: b });
    const graph = d.graphEnd();
    d.memset(b, 0, n * 2);
    d.graphLaunch(graph);
    d.sync();
    d.graphDestroy(graph);
    const got = new Uint16Array(n), src = new Uint16Array(n);
    d.download(b, got);
    d.download(a, src);
    d.copy(b, a, n * 2);
    d.add({ act: "F16", x: a, n, y: b });
    const eager = new Uint16Array(n);
    d.download(b, eager);
    expect(Array.from(got)).toEqual(Array.from(eager)); // b = a + a, recorded
    expect(Array.from(got)).not.toEqual(Array.from(src));

    // an op that fails while recording ends the capture: later ops refuse until lc_graph_end says why
    d.graphBegin();
    d.copy(b, a, n * 2);
    expect(statusOf(() => d.attention({ act: "F16", q: a, cacheDtype: "F16", kCache: a, vCache: a, cacheSlots: 1, qIndptr: a, contextLens: a, blockTables: a, maxBlocksPerSeq: 1, nSeqs: 1, nTokens: 1, maxQLen: 1, maxContextLen: 1, blockSize: 16, nHeads: 1, nKvHeads: 1, headDim: 96, slidingWindow: 0, scale: 1, out: a }))).toBe(Status.Unsupported);
    expect(() => d.add({ act: "F16", x: a, n, y: b })).toThrow(/lc_graph_end/);
    expect(statusOf(() => d.graphEnd())).toBe(Status.Unsupported);
    // the stream runs eagerly again
    d.memset(b, 0, n * 2);
    d.add({ act: "F16", x: a, n, y: b });
    const after = new Uint16Array(n);
    d.download(b, after);
    expect(Array.from(after)).toEqual(Array.from(src)); // 0 + a
    expect(statusOf(() => d.graphEnd())).toBe(Status.InvalidArgument); // no capture open
  } finally {
    d.free(a);
    d.free(b);
    d.hostFree(host);
  }
}

// ---------- timings ----------

function timings(d: Device): void {
  const bufs: DevPtr[] = [];
  const alloc = (bytes: number) => {
    const b = d.alloc(bytes);
    bufs.push(b);
    return b;
  };
  const rnd = (dt: NumericDType, n: number, scale = 1) => {
    const b = alloc(n * BYTES[dt]);
    d.fillRandom({ dtype: dt, ptr: b, n, seed: randInt(1 << 30), scale });
    return b;
  };
  const time = (name: string, fn: () => void) => timeMedian(d, name, fn);
  try {
    const act = "F16" as const;
    // Llama-2-7B attention: 32 heads over 32 KV heads, head_dim 128, blocks of 16
    const heads = 32, headDim = 128, bs = 16, maxBlocks = 256, width = heads * headDim, slots = 32 * maxBlocks * bs;
    const kc = rnd(act, slots * width), vc = rnd(act, slots * width);
    const q = rnd(act, 32 * width), out = alloc(32 * width * 2);
    const tables = alloc(32 * maxBlocks * 4), qIndptr = alloc(33 * 4), ctxLens = alloc(32 * 4);
    d.upload(tables, Int32Array.from({ length: 32 * maxBlocks }, (_, i) => i));
    for (const [nSeqs, ctx] of [[32, 4096], [1, 8192]]) {
      const blocksPerSeq = nSeqs === 1 ? 32 * maxBlocks : maxBlocks; // one 8k sequence spans two sequences' blocks
      d.upload(qIndptr, Int32Array.from({ length: nSeqs + 1 }, (_, i) => i));
      d.upload(ctxLens, new Int32Array(nSeqs).fill(ctx));
      // max_q_len 1 takes the decode kernel; a bound of 2 on the same batch, the kernels it replaced (side by side)
      const wsBytes = Math.max(...[1, 2].map((maxQLen) => d.attentionWorkspaceBytes({ nTokens: nSeqs, nSeqs, maxQLen, maxContextLen: ctx, nHeads: heads, headDim })));
      const ws = alloc(Math.max(16, wsBytes));
      const run = (split: boolean, maxQLen = 1) => () => d.attention({ act, q, cacheDtype: act, kCache: kc, vCache: vc, cacheSlots: slots, qIndptr, contextLens: ctxLens, blockTables: tables, maxBlocksPerSeq: blocksPerSeq, nSeqs, nTokens: nSeqs, maxQLen, maxContextLen: ctx, blockSize: bs, nHeads: heads, nKvHeads: heads, headDim, slidingWindow: 0, scale: 0.088, out, workspace: split ? ws : undefined, workspaceBytes: split ? wsBytes : undefined });
      const gb = (2 * nSeqs * ctx * width * 2) / 1e9;
      const kv = `${nSeqs} seqs x ctx ${ctx} MHA 32/32 (${gb.toFixed(2)} GB of KV)`;
      time(`attention decode, previous unsplit kernel, ${kv}`, run(false, 2));
      time(`attention decode, previous split kernel, ${kv}`, run(true, 2));
      time(`attention decode, decode kernel in one chunk, ${kv}`, run(false));
      time(`attention decode, decode kernel split (workspace ${(wsBytes / 2 ** 20).toFixed(1)} MiB), ${kv}`, run(true));
    }

    // LoRA rank 16, 4096 -> 4096: 32 decode tokens on one adapter vs on 32 adapters
    const r = 16, nSlots = 32;
    const aMats = Array.from({ length: nSlots }, () => rnd(act, r * HIDDEN, 0.02)), bMats = Array.from({ length: nSlots }, () => rnd(act, HIDDEN * r, 0.02));
    const aPtrs = alloc(nSlots * 8), bPtrs = alloc(nSlots * 8), ranks = alloc(nSlots * 4), scales = alloc(nSlots * 4);
    d.upload(aPtrs, BigUint64Array.from(aMats, BigInt));
    d.upload(bPtrs, BigUint64Array.from(bMats, BigInt));
    d.upload(ranks, new Int32Array(nSlots).fill(r));
    d.upload(scales, new Float32Array(nSlots).fill(2));
    const x = rnd(act, 32 * HIDDEN), y = rnd(act, 32 * HIDDEN), tmp = alloc(32 * r * 4);
    for (const nAdapters of [1, 32]) {
      const per = 32 / nAdapters;
      const segIndptr = alloc((nAdapters + 1) * 4), segSlot = alloc(nAdapters * 4);
      d.upload(segIndptr, Int32Array.from({ length: nAdapters + 1 }, (_, i) => i * per));
      d.upload(segSlot, Int32Array.from({ length: nAdapters }, (_, i) => i));
      const seg = { nSlots, segIndptr, segSlot, nSegs: nAdapters, nTokens: 32, maxRank: r };
      const modules = [{ aPtrs, bPtrs, ranks, scales, outOffset: 0, outDim: HIDDEN }];
      time(`lora_shrink 32 tokens on ${nAdapters} adapter(s) r16 4096`, () => d.loraShrink({ act, x, inDim: HIDDEN, wt: act, modules, tmp, ...seg }));
      time(`lora_expand 32 tokens on ${nAdapters} adapter(s) r16 4096`, () => d.loraExpand({ act, tmp, wt: act, modules, yWidth: HIDDEN, y, ...seg }));
    }
    const res = rnd(act, 32 * HIDDEN), w = rnd(act, HIDDEN);
    time("add_rmsnorm f16 32x4096", () => d.addRmsnorm({ act, x, residual: res, wt: act, w, nTokens: 32, hidden: HIDDEN, eps: 1e-5, out: y }));

    // host -> slot for an r16 q,k,v,o adapter (docs/perf-notes.md item 4: target <= 3 ms)
    const slot = alloc(ADAPTER_BYTES), pageable = new Uint8Array(ADAPTER_BYTES).fill(1), pinned = d.hostAlloc(ADAPTER_BYTES).fill(1);
    const mb = (ADAPTER_BYTES / 1e6).toFixed(1);
    try {
      time(`upload ${mb} MB (r16 q,k,v,o adapter) from pageable memory`, () => d.upload(slot, pageable));
      time(`upload ${mb} MB (r16 q,k,v,o adapter) from pinned memory (hostAlloc)`, () => d.upload(slot, pinned));
    } finally {
      d.hostFree(pinned);
    }
  } finally {
    for (const b of bufs) d.free(b);
  }
}
