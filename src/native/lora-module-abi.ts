// lc_lora_module (loracuda.h) as TypeScript builds it for lc_lora_shrink / lc_lora_expand.
import type { DevPtr } from "./native-types.ts";

/** One projection of a LoRA launch (lc_lora_module): slot-indexed device tables, and its columns of y. */
export interface LoraModuleTables {
  /** shrink */
  aPtrs?: DevPtr;
  /** expand */
  bPtrs?: DevPtr;
  ranks: DevPtr;
  /** expand */
  scales?: DevPtr;
  doraMag?: DevPtr | null;
  /** expand: the module's columns [outOffset, outOffset + outDim) of y */
  outOffset?: number;
  outDim?: number;
}

/** lc_lora_shrink / lc_lora_expand take up to this many projections at once. */
export const LORA_MAX_MODULES = 3;

// lc_lora_module as laid out in C: five pointers, then out_offset and out_dim (int64).
export function packModules(modules: LoraModuleTables[]): BigUint64Array {
  const out = new BigUint64Array(Math.max(1, modules.length) * 7);
  modules.forEach((m, i) => {
    const fields = [m.aPtrs ?? 0, m.bPtrs ?? 0, m.ranks, m.scales ?? 0, m.doraMag ?? 0, m.outOffset ?? 0, m.outDim ?? 0];
    fields.forEach((v, f) => (out[i * 7 + f] = BigInt(v)));
  });
  return out;
}

