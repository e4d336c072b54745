// fp32 -> fp16 / bf16 bit patterns (round to nearest even), for uploading fp32 host data to an fp16/bf16 device.
import type { NumericDType } from "../native/device.ts";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function toBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7fffffff) > 0x7f800000) return (b >>> 16) | 0x40;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Bytes of `values` in `dtype`, ready to upload. */
export function encodeFloats(values: Float32Array, dtype: NumericDType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (dtype === "F16") {
    const out = new Float16Array(values.length);
    out.set(values);
    return new Uint8Array(out.buffer);
  }
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toBf16Bits(values[i]);
  return new Uint8Array(out.buffer);
}

/** fp16 / bf16 bit patterns -> fp32 values (exact). */
export function decodeHalfFloats(bits: Uint16Array, dtype: "F16" | "BF16"): Float32Array {
  if (dtype === "F16") return Float32Array.from(new Float16Array(bits.buffer, bits.byteOffset, bits.length));
  const wide = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) wide[i] = bits[i] << 16;
  return new Float32Array(wide.buffer);
}

/** `values` as a device of dtype `dtype` holds them (fp32 -> dtype -> fp32). */
export function roundToDtype(values: Float32Array, dtype: NumericDType): Float32Array {
  return dtype === "F32" ? values.slice() : decodeHalfFloats(new Uint16Array(encodeFloats(values, dtype).buffer), dtype);
}
