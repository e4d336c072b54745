// The value types of loracuda.h's boundary: device pointers, numeric dtypes and their codes, and the
// error a failed call becomes (imported by device.ts and by the struct packers beside it).
import { DTypeCode, Status } from "./ffi.ts";

export type DevPtr = number;
export type NumericDType = "F32" | "F16" | "BF16";

export const DTYPE_CODE: Record<NumericDType, DTypeCode> = { F32: DTypeCode.F32, F16: DTypeCode.F16, BF16: DTypeCode.BF16 };
export const NUMERIC_DTYPE_BYTES: Record<NumericDType, number> = { F32: 4, F16: 2, BF16: 2 };

export class NativeError extends Error {
  constructor(readonly op: string, readonly status: Status, message: string) {
    const text = message || Status[status];
    super(text.startsWith(`${op}:`) ? text : `${op}: ${text}`);
    this.name = "NativeError";
  }
}
