// Writes the safetensors format (the reader's inverse): an 8-byte header length, a JSON header
// padded with spaces to 8 bytes, then each tensor's little-endian bytes in the header's order.
import type { DType } from "./tensor.ts";

export interface TensorToWrite {
  dtype: Extract<DType, "F32" | "F16" | "BF16">;
  shape: number[];
  /** F32 values, or the raw 16-bit patterns of F16 / BF16. */
  data: Float32Array | Uint16Array;
}

export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = Object.keys(metadata).length > 0 ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const wide = t.dtype === "F32";
    if (wide !== t.data instanceof Float32Array || count !== t.data.length) {
      throw new Error(`${name}: ${t.dtype} [${t.shape.join(", ")}] does not match its ${t.data.length} values`);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of Object.values(tensors)) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}
