// ABI v2 additions on the CPU library: lc_fill_random against the header's hash written here in
// BigInt, lc_add_rmsnorm against lc_add + lc_rmsnorm, lc_copy, graphs (CUDA only), and the
// attention workspace (the twin never splits).
import { afterAll, describe, expect, test } from "bun:test";
import { Device, NativeError, type DevPtr, type NumericDType } from "../../src/native/device.ts";
import { Status } from "../../src/native/ffi.ts";
import { decodeHalfFloats, encodeFloats } from "../../src/model/convert.ts";
import { splitmix64 } from "../../src/engine/sampling.ts";

const device = await Device.open("cpu");
const bufs: DevPtr[] = [];
afterAll(() => {
  for (const b of bufs) device.free(b);
  device.close();
});
const alloc = (bytes: number) => {
  const p = device.alloc(bytes);
  bufs.push(p);
  return p;
};
const upload = (data: ArrayBufferView) => {
  const p = alloc(data.byteLength);
  device.upload(p, data);
  return p;
};
const download = (p: DevPtr, bytes: number) => {
  const out = new Uint8Array(bytes);
  device.download(p, out);
  return out;
};

// ---------- lc_fill_random ----------

/** The header's definition: p[i] = scale * (2u - 1), u = (splitmix64(splitmix64(seed) ^ i) >> 40) * 2^-24, in fp32. */
function expectedRandom(n: number, seed: bigint, scale: number): Float32Array {
  const key = splitmix64(BigInt.asUintN(64, seed));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Number(splitmix64(key ^ BigInt(i)) >> 40n) / 2 ** 24;
    out[i] = Math.fround(scale) * (2 * u - 1); // one fp32 rounding of an exact double product
  }
  return out;
}

describe("lc_fill_random", () => {
  const n = 4099;
  for (const [seed, scale] of [[0n, 1], [42n, 0.02], [(1n << 64n) - 1n, 3.5], [123456789n, 1e-3]] as const) {
    test(`seed ${seed} scale ${scale}: fp32 equals the header's hash bit for bit`, () => {
      const p = alloc(n * 4);
      device.fillRandom({ dtype: "F32", ptr: p, n, seed, scale });
      const got = new Float32Array(download(p, n * 4).buffer);
      const want = expectedRandom(n, seed, scale);
      expect(Buffer.compare(Buffer.from(got.buffer), Buffer.from(want.buffer))).toBe(0);
      const mean = got.reduce((a, b) => a + b, 0) / n;
      expect(Math.abs(mean)).toBeLessThan(0.05 * scale); // a sanity check on the hash, not the contract
      expect(Math.max(...got.map(Math.abs))).toBeLessThanOrEqual(scale);
    });
  }

  for (const dt of ["F16", "BF16"] as const) {
    test(`${dt}: the fp32 values rounded to nearest even`, () => {
      const p = alloc(n * 2);
      device.fillRandom({ dtype: dt, ptr: p, n, seed: 7, scale: 0.5 });
      const want = encodeFloats(expectedRandom(n, 7n, 0.5), dt);
      expect(Buffer.compare(Buffer.from(download(p, n * 2)), Buffer.from(want))).toBe(0);
    });
  }

  test("n = 0 writes nothing; a NULL pointer with n > 0 is rejected", () => {
    device.fillRandom({ dtype: "F32", ptr: 0, n: 0, seed: 1, scale: 1 });
    expect(() => device.fillRandom({ dtype: "F32", ptr: 0, n: 4, seed: 1, scale: 1 })).toThrow(/NULL/);
  });
});

// ---------- lc_add_rmsnorm ----------

function randomFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 4;
  });
}

describe("lc_add_rmsnorm", () => {
  // The twin computes in fp32 with activations F32; the fused op must equal add then rmsnorm exactly
  // (same additions, same row reduction code).
  for (const [nTokens, hidden, wt] of [[5, 4096, "F32"], [3, 77, "BF16"], [1, 1, "F16"]] as [number, number, NumericDType][]) {
    test(`${nTokens} x ${hidden}, weights ${wt}: equals lc_add then lc_rmsnorm bit for bit`, () => {
      const n = nTokens * hidden;
      const x = upload(randomFloats(n, 1)), r0 = randomFloats(n, 2);
      const w = upload(encodeFloats(randomFloats(hidden, 3).map((v) => 1 + v / 8), wt));
      const resFused = upload(r0), outFused = alloc(n * 4);
      const resRef = upload(r0), outRef = alloc(n * 4);
      device.addRmsnorm({ act: "F32", x, residual: resFused, wt, w, nTokens, hidden, eps: 1e-5, out: outFused });
      device.add({ act: "F32", x, n, y: resRef });
      device.rmsnorm({ act: "F32", x: resRef, wt, w, nTokens, hidden, eps: 1e-5, out: outRef });
      expect(Buffer.compare(Buffer.from(download(resFused, n * 4)), Buffer.from(download(resRef, n * 4)))).toBe(0);
      expect(Buffer.compare(Buffer.from(download(outFused, n * 4)), Buffer.from(download(outRef, n * 4)))).toBe(0);
    });
  }

  test("fp16 activations: the norm reads the rounded sum; out may alias x", () => {
    const nTokens = 4, hidden = 512, n = nTokens * hidden;
    const xs = encodeFloats(randomFloats(n, 4), "F16"), rs = encodeFloats(randomFloats(n, 5), "F16");
    const w = upload(encodeFloats(randomFloats(hidden, 6), "F16"));
    const x = upload(xs), res = upload(rs), xRef = upload(xs), resRef = upload(rs), outRef = alloc(n * 2);
    device.addRmsnorm({ act: "F16", x, residual: res, wt: "F16", w, nTokens, hidden, eps: 1e-6, out: x });
    device.add({ act: "F16", x: xRef, n, y: resRef });
    device.rmsnorm({ act: "F16", x: resRef, wt: "F16", w, nTokens, hidden, eps: 1e-6, out: outRef });
    expect(Buffer.compare(Buffer.from(download(res, n * 2)), Buffer.from(download(resRef, n * 2)))).toBe(0);
    expect(Buffer.compare(Buffer.from(download(x, n * 2)), Buffer.from(download(outRef, n * 2)))).toBe(0);
    // and the values are a normalised row: mean square of out / w is ~1
    const out = decodeHalfFloats(new Uint16Array(download(x, n * 2).buffer), "F16");
    const wv = decodeHalfFloats(new Uint16Array(encodeFloats(randomFloats(hidden, 6), "F16").buffer), "F16");
    let ms = 0;
    for (let i = 0; i < hidden; i++) ms += (out[i] / wv[i]) ** 2;
    expect(Math.abs(ms / hidden - 1)).toBeLessThan(0.05);
  });

  test("rejects NULL pointers and bad shapes", () => {
    const p = alloc(64);
    expect(() => device.addRmsnorm({ act: "F32", x: p, residual: 0, wt: "F32", w: p, nTokens: 1, hidden: 4, eps: 1e-5, out: p })).toThrow(/NULL/);
    expect(() => device.addRmsnorm({ act: "F32", x: p, residual: p, wt: "F32", w: p, nTokens: 1, hidden: 0, eps: 1e-5, out: p })).toThrow(/shape/);
  });
});

// ---------- lc_copy ----------

test("lc_copy copies device to device, the source left as it was", () => {
  const data = Uint8Array.from({ length: 1001 }, (_, i) => (i * 37) & 255);
  const src = upload(data), dst = alloc(1001);
  device.copy(dst, src, 1001);
  expect(Buffer.compare(Buffer.from(download(dst, 1001)), Buffer.from(data))).toBe(0);
  expect(Buffer.compare(Buffer.from(download(src, 1001)), Buffer.from(data))).toBe(0);
  device.copy(dst, src, 0);
  expect(() => device.copy(0, src, 4)).toThrow(/NULL/);
});

// ---------- graphs ----------

test("graphs are CUDA-only: the twin says Unsupported, destroy is a no-op", () => {
  const status = (fn: () => void) => {
    try {
      fn();
      return Status.Ok;
    } catch (e) {
      return (e as NativeError).status;
    }
  };
  expect(status(() => device.graphBegin())).toBe(Status.Unsupported);
  expect(status(() => device.graphEnd())).toBe(Status.Unsupported);
  expect(status(() => device.graphLaunch(0))).toBe(Status.Unsupported);
  expect(() => device.graphBegin()).toThrow(/CUDA backend/);
  device.graphDestroy(0);
  // the context works as before
  const p = upload(Float32Array.of(1, 2));
  device.add({ act: "F32", x: p, n: 2, y: p });
  expect(Array.from(new Float32Array(download(p, 8).buffer))).toEqual([2, 4]);
});

// ---------- attention workspace ----------

test("attention: the twin needs no workspace and gives the same output with or without one", () => {
  expect(device.attentionWorkspaceBytes({ nTokens: 32, nSeqs: 32, maxQLen: 1, maxContextLen: 8192, nHeads: 32, headDim: 128 })).toBe(0);
  const heads = 2, headDim = 8, bs = 4, ctx = 10, width = heads * headDim;
  const slots = 3 * bs;
  const q = upload(randomFloats(width, 7)), k = upload(randomFloats(slots * width, 8)), v = upload(randomFloats(slots * width, 9));
  const meta = { qIndptr: upload(Int32Array.of(0, 1)), contextLens: upload(Int32Array.of(ctx)), blockTables: upload(Int32Array.of(2, 0, 1)) };
  const ws = alloc(1024);
  const run = (workspace?: DevPtr) => {
    const out = alloc(width * 4);
    device.attention({ act: "F32", q, cacheDtype: "F32", kCache: k, vCache: v, cacheSlots: slots, ...meta, maxBlocksPerSeq: 3, nSeqs: 1, nTokens: 1, maxQLen: 1, maxContextLen: ctx, blockSize: bs, nHeads: heads, nKvHeads: heads, headDim, slidingWindow: 0, scale: 0.3, out, workspace, workspaceBytes: workspace ? 1024 : undefined });
    return download(out, width * 4);
  };
  expect(Buffer.compare(Buffer.from(run()), Buffer.from(run(ws)))).toBe(0);
});
