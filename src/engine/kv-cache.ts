// The paged KV cache on the device: per layer, K and V of [numBlocks * blockSize, kvHeads, headDim].
import type { Device, DevPtr, NumericDType } from "../native/device.ts";
import { NUMERIC_DTYPE_BYTES } from "../native/device.ts";
import type { ModelConfig } from "../model/config.ts";
import type { KvCacheView } from "../model/forward-inputs.ts";

export class KvCache implements KvCacheView {
  readonly k: DevPtr[] = [];
  readonly v: DevPtr[] = [];
  readonly slots: number;

  constructor(private readonly device: Device, config: ModelConfig, readonly numBlocks: number, readonly blockSize: number, readonly dtype: NumericDType) {
    this.slots = numBlocks * blockSize;
    const bytes = this.slots * config.numKvHeads * config.headDim * NUMERIC_DTYPE_BYTES[dtype];
    for (let l = 0; l < config.numLayers; l++) {
      this.k.push(device.alloc(bytes));
      this.v.push(device.alloc(bytes));
    }
  }

  /** Bytes of one block across all layers, K and V. */
  static blockBytes(config: ModelConfig, blockSize: number, dtype: NumericDType): number {
    return 2 * config.numLayers * blockSize * config.numKvHeads * config.headDim * NUMERIC_DTYPE_BYTES[dtype];
  }

  free(): void {
    for (const p of [...this.k.splice(0), ...this.v.splice(0)]) this.device.free(p);
  }
}
