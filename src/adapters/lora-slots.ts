// GPU (device) slots for LoRA adapters: each slot holds one adapter's weights in one buffer, and
// per-(layer, module) tables indexed by slot give the ops their A/B pointers, ranks and scales.
import type { Device, DevPtr, NumericDType } from "../native/device.ts";
import { NativeError, NUMERIC_DTYPE_BYTES } from "../native/device.ts";
import { Status } from "../native/ffi.ts";
import type { ModelConfig } from "../model/config.ts";
import { encodeFloats } from "../model/convert.ts";
import type { LoraSlotTables, SlotTables } from "../model/forward-inputs.ts";
import type { LoraAdapter } from "./lora-adapter.ts";
import { LORA_MODULES, moduleShape, type LoraModule } from "../model/lora-modules.ts";


const M = LORA_MODULES.length;

/** Where one module's A, B (and DoRA scale; -1 if none) sit in a slot buffer, as byte offsets. */
interface PackedEntry {
  layer: number;
  module: LoraModule;
  a: number;
  b: number;
  mag: number;
  rank: number;
  scale: number;
}

/**
 * An adapter's upload-ready image. `bytes` is Device.hostAlloc memory (pinned on CUDA, so lc_upload
 * runs at DMA speed), or a plain array where pinned memory ran out.
 */
interface Packed {
  bytes: Uint8Array;
  pinned: boolean;
  entries: PackedEntry[];
  /** Inside load(): a forget() then leaves it to load() to free once the upload has returned. */
  uploading: boolean;
}

export class LoraSlots implements LoraSlotTables {
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

  private readonly occupied: boolean[];
  /**
   * Packed images by adapter. Ownership: an image lives while its adapter is in the host tier;
   * forget() (called when the AdapterStore drops the adapter) frees it, free() frees all, and an
   * adapter collected without either gets its image freed by `collected`.
   */
  private readonly packed = new WeakMap<LoraAdapter, Packed>();
  /** Every live image (a WeakMap cannot be walked): what free() releases. */
  private readonly images = new Set<Packed>();
  /** Adapters forgotten before (or without) being packed: load() uploads them from a transient image. */
  private readonly forgotten = new WeakSet<LoraAdapter>();
  private readonly collected = new FinalizationRegistry<Packed>((p) => {
    try {
      this.release(p);
    } catch {
      // the device was closed first: its context freed the memory
    }
  });

  constructor(private readonly device: Device, private readonly config: ModelConfig, readonly numSlots: number, readonly dtype: NumericDType, readonly maxRank: number) {
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
    this.occupied = new Array(numSlots).fill(false);
    this.targeted = new Int32Array(config.numLayers * M);
  }

  /** Copies an adapter into a slot (replacing what was there) and publishes it in the tables. */
  load(slot: number, adapter: LoraAdapter): void {
    const packed = this.pack(adapter);
    // lc_upload returns once the copy is done, so the image may go right after it (never during)
    packed.uploading = true;
    try {
      const base = this.slotBuffer(slot, adapter.name, packed.bytes.byteLength);
      this.device.upload(base, packed.bytes);
      this.publishSlot(slot, packed.entries, base);
    } finally {
      packed.uploading = false;
      if (this.forgotten.has(adapter)) this.release(packed); // no longer in the host tier: no image kept
    }
  }

  /** The adapter entered the host tier: its upload image is made now rather than at its first slot load. */
  prepare(adapter: LoraAdapter): void {
    this.pack(adapter);
  }

  /**
   * The adapter left the host tier: frees its packed image (now, or when the upload in flight from
   * it ends). A later load() of the same object packs it again, for that load only.
   */
  forget(adapter: LoraAdapter): void {
    this.forgotten.add(adapter);
    const packed = this.packed.get(adapter);
    if (!packed) return;
    this.packed.delete(adapter);
    this.collected.unregister(packed);
    if (!packed.uploading) this.release(packed);
  }

  /** Live packed images (host memory from Device.hostAlloc or the pageable fallback). */
  get packedImages(): number {
    return this.images.size;
  }

  /** Fills a slot with random weights on the device (benchmarks): `rank` on each of `modules`. */
  loadRandom(slot: number, spec: { rank: number; modules: readonly LoraModule[]; seed: number }): void {
    const e = NUMERIC_DTYPE_BYTES[this.dtype];
    const entries: PackedEntry[] = [];
    let offset = 0;
    for (let layer = 0; layer < this.config.numLayers; layer++) {
      for (const module of spec.modules) {
        const [out, inDim] = moduleShape(this.config, module);
        entries.push({ layer, module, a: offset, b: offset + spec.rank * inDim * e, mag: -1, rank: spec.rank, scale: 1 / spec.rank });
        offset += (spec.rank * inDim + out * spec.rank) * e;
      }
    }
    const base = this.slotBuffer(slot, `random-${spec.seed}`, offset);
    // A ~ U(-1/sqrt(in), 1/sqrt(in)) keeps the activations' scale; B likewise over the rank
    for (const en of entries) {
      const [out, inDim] = moduleShape(this.config, en.module);
      this.device.fillRandom({ dtype: this.dtype, ptr: base + en.a, n: spec.rank * inDim, seed: spec.seed * 1000 + en.a, scale: 1 / Math.sqrt(inDim) });
      this.device.fillRandom({ dtype: this.dtype, ptr: base + en.b, n: out * spec.rank, seed: spec.seed * 1000 + en.b, scale: 1 / Math.sqrt(spec.rank) });
    }
    this.publishSlot(slot, entries, base);
  }

  /** Device bytes one slot reserves: every projection at max_lora_rank, DoRA magnitudes included. */
  get slotBytes(): number {
    const e = NUMERIC_DTYPE_BYTES[this.dtype];
    let bytes = 0;
    for (const module of LORA_MODULES) {
      const [out, inDim] = moduleShape(this.config, module);
      bytes += (this.maxRank * (inDim + out)) * e + out * 4;
    }
    return bytes * this.config.numLayers;
  }

  // Slot buffers are allocated once, at full size, so swapping adapters never allocates or frees.
  private slotBuffer(slot: number, name: string, bytes: number): DevPtr {
    if (bytes > this.slotBytes) throw new Error(`adapter "${name}" needs ${bytes} bytes, a slot holds ${this.slotBytes}`);
    this.clear(slot);
    this.buffers[slot] ??= this.device.alloc(this.slotBytes);
    return this.buffers[slot]!;
  }

  private publishSlot(slot: number, entries: PackedEntry[], base: DevPtr): void {
    for (const en of entries) {
      const i = this.index(en.layer, en.module, slot);
      this.hostA[i] = BigInt(base + en.a);
      this.hostB[i] = BigInt(base + en.b);
      this.hostMag[i] = en.mag >= 0 ? BigInt(base + en.mag) : 0n;
      this.hostRanks[i] = en.rank;
      this.hostScales[i] = en.scale;
      this.targeted[en.layer * M + LORA_MODULES.indexOf(en.module)]++;
    }
    this.occupied[slot] = true;
    this.publish();
  }

  // The adapter as one upload-ready byte image in the slot dtype, made once per adapter (kept
  // until forget(); an adapter already forgotten gets a fresh image for each load).
  private pack(adapter: LoraAdapter): Packed {
    const cached = this.packed.get(adapter);
    if (cached) return cached;
    const parts: Uint8Array[] = [];
    const entries: PackedEntry[] = [];
    let offset = 0;
    const put = (values: Float32Array, dtype: NumericDType): number => {
      const bytes = encodeFloats(values, dtype);
      parts.push(bytes);
      offset += bytes.byteLength;
      return offset - bytes.byteLength;
    };
    for (const m of adapter.modules) {
      const a = put(m.a, this.dtype), b = put(m.b, this.dtype);
      const mag = m.doraScale ? put(m.doraScale, "F32") : -1;
      entries.push({ layer: m.layer, module: m.module, a, b, mag, rank: m.rank, scale: m.scale });
    }
    const { bytes, pinned } = this.hostImage(offset);
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.byteLength;
    }
    const result: Packed = { bytes, pinned, entries, uploading: false };
    this.images.add(result);
    if (!this.forgotten.has(adapter)) {
      this.packed.set(adapter, result);
      this.collected.register(adapter, result, result);
    }
    return result;
  }

  // Pinned host memory, or pageable memory where the device has no more to pin (slower uploads only).
  private hostImage(bytes: number): { bytes: Uint8Array; pinned: boolean } {
    try {
      return { bytes: this.device.hostAlloc(bytes), pinned: true };
    } catch (e) {
      if (!(e instanceof NativeError) || e.status !== Status.OutOfMemory) throw e;
      return { bytes: new Uint8Array(bytes), pinned: false };
    }
  }

  private release(packed: Packed): void {
    if (!this.images.delete(packed)) return;
    if (packed.pinned) this.device.hostFree(packed.bytes);
  }

  /** Empties a slot's tables (its buffer stays reserved for the next adapter). */
  clear(slot: number): void {
    if (!this.occupied[slot]) return;
    this.occupied[slot] = false;
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
  }

  isTargeted(layer: number, module: LoraModule): boolean {
    return this.targeted[layer * M + LORA_MODULES.indexOf(module)] > 0;
  }

  tables(layer: number, module: LoraModule): SlotTables {
    const i = this.index(layer, module, 0);
    return { aPtrs: this.aPtrs + i * 8, bPtrs: this.bPtrs + i * 8, doraMag: this.magPtrs + i * 8, ranks: this.ranks + i * 4, scales: this.scales + i * 4 };
  }

  free(): void {
    for (const p of this.images) {
      this.collected.unregister(p);
      this.release(p);
    }
    for (let s = 0; s < this.numSlots; s++) this.clear(s);
    for (const p of this.buffers) if (p !== null) this.device.free(p);
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
