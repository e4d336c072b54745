// GPU (device) slots for LoRA adapters: each slot holds one adapter's weights in one buffer, and
// per-(layer, module) tables indexed by slot give the ops their A/B pointers, ranks and scales.
import type { Device, DevPtr, NumericDType } from "../native/device.ts";
import { NUMERIC_DTYPE_BYTES } from "../native/device.ts";
import type { ModelConfig } from "../model/config.ts";
import { encodeFloats } from "../model/convert.ts";
import { LORA_MODULES, type LoraAdapter, type LoraModule } from "./lora-adapter.ts";

export interface SlotTables {
  aPtrs: DevPtr;
  bPtrs: DevPtr;
  doraMag: DevPtr;
  ranks: DevPtr;
  scales: DevPtr;
}

const M = LORA_MODULES.length;

export class LoraSlots {
  private readonly hostA: BigUint64Array;
  private readonly hostB: BigUint64Array;
  private readonly hostMag: BigUint64Array;
  private readonly hostRanks: Int32Array;
  private readonly hostScales: Float32Array;
  private readonly aPtrs: DevPtr;
  private readonly bPtrs: DevPtr;
  private readonly magPtrs: DevPtr;
  private readonly ranks: DevPtr;
  private readonly scales: DevPtr;
  private readonly buffers: (DevPtr | null)[];
  /** Whether any resident adapter targets (layer, module): lets the forward pass skip untouched projections. */
  private readonly targeted: Int32Array;

  constructor(private readonly device: Device, private readonly config: ModelConfig, readonly numSlots: number, readonly dtype: NumericDType) {
    const n = config.numLayers * M * numSlots;
    this.hostA = new BigUint64Array(n);
    this.hostB = new BigUint64Array(n);
    this.hostMag = new BigUint64Array(n);
    this.hostRanks = new Int32Array(n);
    this.hostScales = new Float32Array(n);
    this.aPtrs = device.alloc(n * 8);
    this.bPtrs = device.alloc(n * 8);
    this.magPtrs = device.alloc(n * 8);
    this.ranks = device.alloc(n * 4);
    this.scales = device.alloc(n * 4);
    this.buffers = new Array(numSlots).fill(null);
    this.targeted = new Int32Array(config.numLayers * M);
  }

  /** Copies an adapter into a slot (replacing what was there) and publishes it in the tables. */
  load(slot: number, adapter: LoraAdapter): void {
    this.clear(slot);
    const e = NUMERIC_DTYPE_BYTES[this.dtype];
    let bytes = 0;
    for (const m of adapter.modules) bytes += (m.a.length + m.b.length) * e + (m.doraScale ? m.doraScale.length * 4 : 0);
    const base = this.device.alloc(bytes);
    this.buffers[slot] = base;
    let offset = 0;
    const put = (values: Float32Array, dtype: NumericDType): DevPtr => {
      const encoded = encodeFloats(values, dtype);
      this.device.upload(base + offset, encoded);
      offset += encoded.byteLength;
      return base + offset - encoded.byteLength;
    };
    for (const m of adapter.modules) {
      const i = this.index(m.layer, m.module, slot);
      this.hostA[i] = BigInt(put(m.a, this.dtype));
      this.hostB[i] = BigInt(put(m.b, this.dtype));
      this.hostMag[i] = m.doraScale ? BigInt(put(m.doraScale, "F32")) : 0n;
      this.hostRanks[i] = m.rank;
      this.hostScales[i] = m.scale;
      this.targeted[m.layer * M + LORA_MODULES.indexOf(m.module)]++;
    }
    this.publish();
  }

  clear(slot: number): void {
    const buffer = this.buffers[slot];
    if (buffer === null) return;
    for (let l = 0; l < this.config.numLayers; l++) {
      for (let m = 0; m < M; m++) {
        const i = (l * M + m) * this.numSlots + slot;
        if (this.hostRanks[i] > 0) this.targeted[l * M + m]--;
        this.hostA[i] = this.hostB[i] = this.hostMag[i] = 0n;
        this.hostRanks[i] = 0;
        this.hostScales[i] = 0;
      }
    }
    this.publish();
    this.device.free(buffer);
    this.buffers[slot] = null;
  }

  isTargeted(layer: number, module: LoraModule): boolean {
    return this.targeted[layer * M + LORA_MODULES.indexOf(module)] > 0;
  }

  tables(layer: number, module: LoraModule): SlotTables {
    const i = this.index(layer, module, 0);
    return { aPtrs: this.aPtrs + i * 8, bPtrs: this.bPtrs + i * 8, doraMag: this.magPtrs + i * 8, ranks: this.ranks + i * 4, scales: this.scales + i * 4 };
  }

  free(): void {
    for (let s = 0; s < this.numSlots; s++) this.clear(s);
    for (const p of [this.aPtrs, this.bPtrs, this.magPtrs, this.ranks, this.scales]) this.device.free(p);
  }

  private index(layer: number, module: LoraModule, slot: number): number {
    return (layer * M + LORA_MODULES.indexOf(module)) * this.numSlots + slot;
  }

  // The tables are small (layers x 7 x slots); one upload each keeps device and host identical.
  private publish(): void {
    this.device.upload(this.aPtrs, this.hostA);
    this.device.upload(this.bPtrs, this.hostB);
    this.device.upload(this.magPtrs, this.hostMag);
    this.device.upload(this.ranks, this.hostRanks);
    this.device.upload(this.scales, this.hostScales);
  }
}
