// Types shared by the weight readers, and the exact float conversions.
import { readFileSync, statSync } from "node:fs";

export type DType = "F32" | "F16" | "BF16" | "F64" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

export const DTYPE_BYTES: Record<DType, number> = {
  F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export function isDType(s: unknown): s is DType {
  return typeof s === "string" && Object.hasOwn(DTYPE_BYTES, s);
}

/** One tensor: `data` is exactly its bytes (little-endian), a view into the mapped file. */
export interface TensorView {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

/** A weight file that breaks its format's rules; the message names the file (and tensor). */
export class WeightsFormatError extends Error {
  override name = "WeightsFormatError";
}

/** Product of the dims, or NaN when it is not a safe integer. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return Number.isSafeInteger(n) ? n : NaN;
}

/** Map a whole file read-only-in-spirit: MAP_PRIVATE, so a stray write to a view never reaches the disk. */
/**
 * The file's bytes: memory-mapped, or with `copy` read into memory. Map only files that are never
 * changed while mapped (a base model's weights): touching a mapping whose file shrank kills the
 * process with SIGBUS. Adapters, which operators replace while the server runs, are copied.
 */
export function mapFile(path: string, minBytes = 1, copy = false): Uint8Array {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new WeightsFormatError(`${path}: cannot open: ${(e as Error).message}`);
  }
  if (size < minBytes) throw new WeightsFormatError(`${path}: file is ${size} bytes, shorter than ${minBytes}`);
  if (copy) {
    try {
      return new Uint8Array(readFileSync(path));
    } catch (e) {
      throw new WeightsFormatError(`${path}: cannot read: ${(e as Error).message}`);
    }
  }
  try {
    return Bun.mmap(path, { shared: false });
  } catch (e) {
    // Bun.mmap opens the file read-write even for MAP_PRIVATE, so a read-only file or mount fails
    // here (EACCES / EROFS); read it instead: correct, at the cost of resident memory.
    try {
      return new Uint8Array(readFileSync(path));
    } catch {
      throw new WeightsFormatError(`${path}: cannot map or read: ${(e as Error).message}`);
    }
  }
}

let f16Table: Float32Array | undefined;

/** All 65536 f16 bit patterns as f32 (every f16 is exactly representable in f32). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0) t[h] = sign * man * 2 ** -24;
    else if (exp === 31) t[h] = man ? NaN : sign * Infinity;
    else t[h] = sign * (1 + man / 1024) * 2 ** (exp - 15);
  }
  return (f16Table = t);
}

/** Typed arrays need aligned offsets; copy the bytes only when the view is misaligned. */
function aligned(data: Uint8Array, size: number): Uint8Array {
  return data.byteOffset % size === 0 ? data : data.slice();
}

/** Exact conversion of a floating-point tensor to f32 (F64 rounds to nearest, as usual). */
export function tensorToFloat32(t: TensorView): Float32Array {
  const bytes = DTYPE_BYTES[t.dtype];
  if (t.data.byteLength % bytes !== 0) throw new WeightsFormatError(`tensor "${t.name}": ${t.data.byteLength} bytes is not a whole number of ${t.dtype}`);
  const n = t.data.byteLength / bytes;
  const d = aligned(t.data, bytes);
  switch (t.dtype) {
    case "F32":
      return new Float32Array(d.buffer, d.byteOffset, n).slice();
    case "F64":
      return Float32Array.from(new Float64Array(d.buffer, d.byteOffset, n));
    case "F16": {
      const src = new Uint16Array(d.buffer, d.byteOffset, n);
      const table = halfTable();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[src[i]];
      return out;
    }
    case "BF16": {
      const src = new Uint16Array(d.buffer, d.byteOffset, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16; // bf16 is the top half of an f32
      return out;
    }
    default:
      throw new WeightsFormatError(`tensor "${t.name}": cannot convert ${t.dtype} to float32`);
  }
}
