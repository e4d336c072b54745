// A step's metadata (token ids, positions, block tables, segments, sampling parameters) goes to the
// device through one pinned staging buffer and lc_upload_async: each buffer is one DMA enqueued
// ahead of the kernels that read it, with no wait per buffer (a plain upload waits for the copy).
import type { Device, DevPtr } from "../native/device.ts";

const ALIGN = 16;

export class MetadataStager {
  private readonly host: Uint8Array;
  private offset = 0;
  /** device.syncEpoch when the staged bytes were last handed to an async copy (-1: none pending) */
  private pendingEpoch = -1;

  constructor(private readonly device: Device, readonly capacity: number) {
    this.host = device.hostAlloc(capacity);
  }

  /** Starts a step's staging at the front of the buffer, once the copies still reading it have run. */
  reset(): void {
    if (this.pendingEpoch === this.device.syncEpoch) this.device.sync();
    this.pendingEpoch = -1;
    this.offset = 0;
  }

  /** Stages `src` and enqueues its copy to dst. */
  put(dst: DevPtr, src: ArrayBufferView): void {
    const n = src.byteLength;
    if (n === 0) return;
    if (this.offset + n > this.capacity) {
      if (n > this.capacity) throw new RangeError(`metadata of ${n} bytes exceeds the ${this.capacity}-byte staging buffer`);
      this.reset();
    }
    const at = this.offset;
    this.host.set(new Uint8Array(src.buffer, src.byteOffset, n), at);
    this.device.uploadAsync(dst, this.host.subarray(at, at + n));
    this.offset = Math.ceil((at + n) / ALIGN) * ALIGN;
    this.pendingEpoch = this.device.syncEpoch;
  }

  free(): void {
    this.device.sync(); // copies may still read the buffer
    this.device.hostFree(this.host);
  }
}
