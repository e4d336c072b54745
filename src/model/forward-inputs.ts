// What the forward pass reads of the state other layers own: the device LoRA slots (kept by
// adapters/LoraSlots) and the paged KV cache (kept by engine/KvCache). Declared here so that the
// model layer depends on no layer above it; those classes implement these.
import type { DevPtr, NumericDType } from "../native/device.ts";
import type { LoraModule } from "./lora-modules.ts";

/** Per (layer, module): device arrays over the slots, as lc_lora_shrink / lc_lora_expand take them. */
export interface SlotTables {
  aPtrs: DevPtr;
  bPtrs: DevPtr;
  doraMag: DevPtr;
  ranks: DevPtr;
  scales: DevPtr;
}

export interface LoraSlotTables {
  readonly numSlots: number;
  readonly dtype: NumericDType;
  /** Whether any slot's adapter has weights on this module. */
  isTargeted(layer: number, module: LoraModule): boolean;
  tables(layer: number, module: LoraModule): SlotTables;
}

export interface KvCacheView {
  /** Per layer. */
  readonly k: DevPtr[];
  readonly v: DevPtr[];
  readonly slots: number;
  readonly blockSize: number;
  readonly dtype: NumericDType;
}
