// Shared by the test/gpu op files: the device under test beside the CPU twin, seeded random inputs,
// buffers held on both, and the comparison rule (its tolerances are argued in ops.test.ts).
// LORA_SERVE_GPU_TEST_DEVICE=cpu makes the CPU twin the device under test (a self-check of the tests);
// LORA_SERVE_GPU_EMULATED=1 says the CUDA library is the CPU emulator's (`npm run test:emu`).
import { afterAll, expect, test } from "bun:test";
import { FFIType, dlopen } from "bun:ffi";
import { Device, NativeError, type DevPtr, type NumericDType } from "../../src/native/device.ts";
import { Status } from "../../src/native/ffi.ts";
import { decodeHalfFloats, encodeFloats, roundToDtype } from "../../src/model/convert.ts";

export const DUT = process.env.LORA_SERVE_GPU_TEST_DEVICE === "cpu" ? "cpu" : "cuda";
/** Why timings would mean nothing here (the twin, or the emulator), or "" on a real GPU. */
export const UNTIMED = DUT !== "cuda" ? "the device under test is the CPU twin" : process.env.LORA_SERVE_GPU_EMULATED ? "the CUDA library is emulated on the CPU" : "";

/** The device under test and the twin, or a reason to skip (no GPU / no libloracuda.so). */
export async function openBackends(file: string): Promise<{ dut?: Device; cpu?: Device; skipReason: string }> {
  const dut = await openOrSkip(DUT, file);
  return dut ? { dut, cpu: await Device.open("cpu"), skipReason: "" } : { skipReason: "no usable GPU" };
}

/** The CUDA backend, or undefined (with the reason printed) where there is no GPU or no library. */
export async function openCuda(file: string): Promise<Device | undefined> {
  return openOrSkip("cuda", file);
}

async function openOrSkip(kind: "cpu" | "cuda", file: string): Promise<Device | undefined> {
  try {
    return await Device.open(kind);
  } catch (e) {
    const missing = e instanceof NativeError && (e.status === Status.NoDevice || /not found/.test(e.message));
    if (!missing) throw e; // a broken build or missing cuBLAS must fail loudly, not skip
    console.log(`SKIP ${file}: ${(e as Error).message}`);
    return undefined;
  }
}

/**
 * The CUDA backend with the named LORA_SERVE_CUDA_* switches at 0 while its context is created (the library
 * reads them with getenv, which Bun's process.env does not reach: libc's setenv does).
 */
export async function openCudaSwitchedOff(names: string[]): Promise<Device> {
  const libc = dlopen("libc.so.6", {
    setenv: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    unsetenv: { args: [FFIType.ptr], returns: FFIType.i32 },
  });
  const c = (s: string) => Buffer.from(`${s}\0`);
  try {
    for (const n of names) libc.symbols.setenv(c(n), c("0"), 1);
    return await Device.open("cuda");
  } finally {
    for (const n of names) libc.symbols.unsetenv(c(n));
    libc.close();
  }
}

// ---------- random inputs ----------

export interface Rng {
  rand(): number;
  randInt(n: number): number;
  randn(n: number, std?: number): Float32Array;
  shuffle<T>(a: T[]): T[];
}

export function makeRng(seed: number): Rng {
  let state = seed >>> 0;
  const rand = () => { // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const randInt = (n: number) => Math.floor(rand() * n);
  return {
    rand,
    randInt,
    randn(n: number, std = 1): Float32Array {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i += 2) {
        const r = Math.sqrt(-2 * Math.log(1 - rand())) * std, a = 2 * Math.PI * rand();
        out[i] = r * Math.cos(a);
        if (i + 1 < n) out[i + 1] = r * Math.sin(a);
      }
      return out;
    },
    shuffle<T>(a: T[]): T[] {
      for (let i = a.length - 1; i > 0; i--) {
        const j = randInt(i + 1);
        [a[i], a[j]] = [a[j], a[i]];
      }
      return a;
    },
  };
}

// ---------- both backends side by side ----------

export const BYTES: Record<NumericDType, number> = { F32: 4, F16: 2, BF16: 2 };
export interface Buf { g: DevPtr; c: DevPtr; bytes: number }
export type Side = "g" | "c";

/** Buffers allocated on the device under test (g) and the CPU twin (c), freed together. */
export class Pair {
  private bufs: Buf[] = [];
  constructor(readonly g: Device, readonly c: Device) {}
  alloc(bytes: number): Buf {
    const b = { g: this.g.alloc(bytes), c: this.c.alloc(bytes), bytes };
    this.bufs.push(b);
    return b;
  }
  /** A buffer holding `data` on both sides. */
  from(data: ArrayBufferView): Buf {
    const b = this.alloc(data.byteLength);
    this.g.upload(b.g, data);
    this.c.upload(b.c, data);
    return b;
  }
  floats(values: Float32Array, dt: NumericDType): Buf { return this.from(encodeFloats(values, dt)); }
  /** New contents for an existing buffer, on both sides. */
  set(b: Buf, data: ArrayBufferView): void {
    this.g.upload(b.g, data);
    this.c.upload(b.c, data);
  }
  /** A device array of per-slot pointers (0 for null): each side gets its own addresses. */
  pointers(slots: (Buf | null)[]): Buf {
    const b = this.alloc(slots.length * 8);
    for (const side of ["g", "c"] as Side[]) {
      const arr = new BigUint64Array(slots.map((s) => BigInt(s ? s[side] : 0)));
      this[side].upload(b[side], arr);
    }
    return b;
  }
  /** Fills both sides with 0xFF bytes (NaN in every float dtype) so unwritten outputs show. */
  poison(b: Buf): void {
    this.g.memset(b.g, 0xff, b.bytes);
    this.c.memset(b.c, 0xff, b.bytes);
  }
  /** Runs the op on both backends; p maps a Buf to that side's pointer. */
  run(op: (d: Device, p: (b: Buf) => DevPtr) => void): void {
    op(this.g, (b) => b.g);
    this.g.sync();
    op(this.c, (b) => b.c);
  }
  bytes(b: Buf, side: Side): Uint8Array {
    const out = new Uint8Array(b.bytes);
    this[side].download(b[side], out);
    return out;
  }
  read(b: Buf, dt: NumericDType): { g: Float32Array; c: Float32Array } {
    return { g: decode(this.bytes(b, "g"), dt), c: decode(this.bytes(b, "c"), dt) };
  }
  free(): void {
    for (const b of this.bufs) {
      this.g.free(b.g);
      this.c.free(b.c);
    }
    this.bufs = [];
  }
}

export function decode(bytes: Uint8Array, dt: NumericDType): Float32Array {
  if (dt === "F32") return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  return decodeHalfFloats(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2), dt);
}
/** Values as the device holds them: fp32 -> dt -> fp32, so the expected math sees the same inputs. */
export const rounded = roundToDtype;

/** Runs body with a fresh Pair, freeing its buffers afterwards. */
export function pairWith(g: Device, c: Device, body: (p: Pair) => void): void {
  const p = new Pair(g, c);
  try { body(p); } finally { p.free(); }
}

// ---------- comparisons ----------

export const EPS: Record<NumericDType, number> = { F32: 2 ** -23, F16: 2 ** -10, BF16: 2 ** -7 };
export const tolFor = (dt: NumericDType) => (dt === "F32" ? 1e-4 : 2 * EPS[dt]);
/** A value computed in `act` and stored into a `cache` dtype: the device and the twin may land an fp32 hair apart
 * and the store rounds once more, so one ulp of the coarser of the two can separate them (a bf16 cache under
 * f16 activations: a bf16 ulp, 8x an f16 one). */
export const storeTolFor = (act: NumericDType, cache: NumericDType) => Math.max(tolFor(act), tolFor(cache));
/** Attention outputs of a kernel that rounds the softmax weights to fp16/bf16 (argued in ops.test.ts). */
export const attentionTolFor = (dt: NumericDType) => (dt === "F32" ? tolFor(dt) : 4 * EPS[dt]);

export function rms(v: Float32Array, idx?: number[]): number {
  let s = 0, n = 0;
  const each = (x: number) => { if (Number.isFinite(x)) { s += x * x; n++; } };
  if (idx) for (const i of idx) each(v[i]); else for (const x of v) each(x);
  return Math.sqrt(s / Math.max(1, n));
}

/** |got - want| <= tol (|want| + rms(want)) on every element (or on `idx`), and got finite there. */
export function expectClose(what: string, got: Float32Array, want: Float32Array, tol: number, idx?: number[]): void {
  expect(got.length).toBe(want.length);
  const scale = rms(want, idx);
  let worst = 0, at = -1, bad = 0, badAt = -1;
  const check = (i: number) => {
    if (!Number.isFinite(got[i]) || !Number.isFinite(want[i])) { bad++; badAt = i; return; }
    const r = Math.abs(got[i] - want[i]) / (tol * (Math.abs(want[i]) + scale));
    if (r > worst) { worst = r; at = i; }
  };
  if (idx) for (const i of idx) check(i); else for (let i = 0; i < got.length; i++) check(i);
  if (bad) throw new Error(`${what}: ${bad} non-finite values (first at ${badAt}: got ${got[badAt]}, want ${want[badAt]})`);
  if (worst > 1)
    throw new Error(`${what}: element ${at} got ${got[at]}, want ${want[at]}: ${worst.toFixed(2)}x the bound ${tol} * (|want| + rms ${scale.toPrecision(3)})`);
}
export function compare(p: Pair, what: string, b: Buf, dt: NumericDType, tol = tolFor(dt), idx?: number[]): void {
  const { g, c } = p.read(b, dt);
  expectClose(what, g, c, tol, idx);
}

/** Byte equality with the first differing element named (for bit-exact checks). */
export function expectSameBytes(what: string, got: Uint8Array, want: Uint8Array, elemBytes = 2): void {
  expect(got.length).toBe(want.length);
  if (Buffer.compare(Buffer.from(got), Buffer.from(want)) === 0) return;
  let i = 0;
  while (got[i] === want[i]) i++;
  let diff = 0;
  for (let k = 0; k < got.length; k += elemBytes) if (Buffer.compare(Buffer.from(got.subarray(k, k + elemBytes)), Buffer.from(want.subarray(k, k + elemBytes))) !== 0) diff++;
  throw new Error(`${what}: ${diff} of ${got.length / elemBytes} elements differ, the first at element ${Math.floor(i / elemBytes)}`);
}

/** Prints "TIME name: median ms" over 10 runs after a warm-up; each run includes its launch and a sync. */
export function timeMedian(d: Device, name: string, fn: () => void): void {
  fn();
  d.sync();
  const ms: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    fn();
    d.sync();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  console.log(`TIME ${name}: ${ms[5].toFixed(3)} ms`);
}

/**
 * One GPU op-test file's setup: the backends (or a printed skip), a `gpuTest` that skips without a
 * GPU, devices closed after the file, and seeded random inputs (GPU_TEST_SEED fixes the seed).
 */
export async function gpuSuite(label: string) {
  const { dut, cpu } = await openBackends(label);
  // the emulator runs a CUDA thread at a time: allow it 5x a GPU host's bound (the twin's share is the same)
  const gpuTest = (name: string, fn: () => void, timeoutMs = process.env.LORA_SERVE_GPU_EMULATED ? 900_000 : 180_000) =>
    (dut ? test : test.skip)(name, fn, timeoutMs);
  /** A test that only times: skipped, with the reason printed, where timings mean nothing. */
  const timingTest = (name: string, fn: () => void) => {
    if (dut && UNTIMED) console.log(`SKIP ${label} "${name}": ${UNTIMED}`);
    (dut && !UNTIMED ? test : test.skip)(name, fn, 180_000);
  };
  afterAll(() => {
    dut?.close();
    cpu?.close();
  });
  const seed = Number(process.env.GPU_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
  if (dut) console.log(`${label}: device ${DUT}, seed ${seed}`);
  return { dut, cpu, gpuTest, timingTest, ...makeRng(seed) };
}

/** The status a native call fails with (Ok if it does not); anything but a NativeError is rethrown. */
export function statusOf(fn: () => void): Status {
  try {
    fn();
    return Status.Ok;
  } catch (e) {
    if ((e as NativeError).status === undefined) throw e;
    return (e as NativeError).status;
  }
}
