// ABI v3: lc_host_alloc / lc_host_free on the CPU library and Device.hostAlloc / hostFree over it:
// views over native memory, their round trip through upload / download, and what is refused.
// ABI v4: lc_upload_async, which only takes bytes inside one hostAlloc'd buffer.
import { afterAll, describe, expect, test } from "bun:test";
import { ptr, toArrayBuffer } from "bun:ffi";
import { Device, NativeError } from "../../src/native/device.ts";
import { LC_ABI_VERSION, Status, openLoracuda } from "../../src/native/ffi.ts";
import { thrown } from "../helpers/thrown.ts";

const device = await Device.open("cpu");
afterAll(() => device.close());

function expectRefused(fn: () => unknown, op: string, pattern: RegExp): void {
  const err = thrown(() => fn());
  expect(err).toBeInstanceOf(NativeError);
  expect((err as NativeError).op).toBe(op);
  expect((err as NativeError).status).toBe(Status.InvalidArgument);
  expect((err as Error).message).toMatch(pattern);
}

describe("Device.hostAlloc / hostFree", () => {
  test("ABI 6 (host memory since 3) on both sides", () => {
    expect(LC_ABI_VERSION).toBe(6);
    expect(openLoracuda(device.libraryPath).lc_abi_version()).toBe(6);
  });

  test("a zero-filled view over the native memory: upload from it and download into it round trip", () => {
    const n = (1 << 20) + 13;
    const before = device.hostAllocations;
    const src = device.hostAlloc(n);
    expect(src).toBeInstanceOf(Uint8Array);
    expect(src.byteLength).toBe(n);
    expect(device.hostAllocations).toBe(before + 1);
    expect(src.every((b) => b === 0)).toBe(true);
    expect(Number(ptr(src)) % 64).toBe(0); // aligned, and ptr() sees the native address (no copy)
    for (let i = 0; i < n; i++) src[i] = (i * 31 + 7) & 0xff;
    const d = device.alloc(n);
    device.upload(d, src);
    const dst = device.hostAlloc(n);
    device.download(d, dst);
    expect(Buffer.compare(Buffer.from(dst), Buffer.from(src))).toBe(0);
    // a subarray passes its own address (offset) through FFIType.ptr
    const part = new Uint8Array(100);
    device.download(d + 1000, part);
    expect(part).toEqual(src.subarray(1000, 1100));
    device.upload(d, src.subarray(5000, 5100));
    device.download(d, part);
    expect(part).toEqual(src.subarray(5000, 5100));
    device.free(d);
    device.hostFree(src);
    device.hostFree(dst);
    expect(device.hostAllocations).toBe(before);
  });

  test("a freed view is detached (reads as empty, never touches freed memory)", () => {
    const v = device.hostAlloc(4096);
    const sub = v.subarray(10, 20);
    v[0] = 1;
    device.hostFree(v);
    expect(v.byteLength).toBe(0);
    expect(sub.byteLength).toBe(0);
    expect(v[0]).toBeUndefined();
  });

  test("zero bytes: an empty view that can be freed", () => {
    const v = device.hostAlloc(0);
    expect(v.byteLength).toBe(0);
    device.hostFree(v);
  });

  test("freeing twice, a plain array, a subarray or another device's view is refused", async () => {
    const v = device.hostAlloc(256);
    expectRefused(() => device.hostFree(new Uint8Array(256)), "lc_host_free", /not a live view from hostAlloc/);
    expectRefused(() => device.hostFree(v.subarray(0, 128)), "lc_host_free", /not a live view from hostAlloc/);
    const other = await Device.open("cpu");
    try {
      const w = other.hostAlloc(256);
      expectRefused(() => device.hostFree(w), "lc_host_free", /not a live view from hostAlloc/);
      other.hostFree(w);
    } finally {
      other.close();
    }
    device.hostFree(v);
    expectRefused(() => device.hostFree(v), "lc_host_free", /not a live view from hostAlloc/);
  });

  test("uploadAsync: from a view or a subarray of one; pageable memory or a range past the buffer is refused", () => {
    const host = device.hostAlloc(4096), dst = device.alloc(4096), back = new Uint8Array(100);
    try {
      host.set(Uint8Array.from({ length: 4096 }, (_, i) => (i * 7) & 255));
      const epoch = device.syncEpoch;
      device.uploadAsync(dst, host.subarray(1000, 1100));
      device.download(dst, back);
      expect(device.syncEpoch).toBe(epoch + 1); // the download waited: staged bytes may be reused
      expect([...back]).toEqual([...host.subarray(1000, 1100)]);
      expectRefused(() => device.uploadAsync(dst, new Uint8Array(64)), "lc_upload_async", /not inside one lc_host_alloc'd buffer/);
      const past = new Uint8Array(toArrayBuffer(ptr(host) + 4000, 0, 200)); // 96 bytes past its end
      expectRefused(() => device.uploadAsync(dst, past), "lc_upload_async", /not inside one lc_host_alloc'd buffer/);
    } finally {
      device.hostFree(host);
      device.free(dst);
    }
  });

  test("closing the device frees and detaches what is still allocated", async () => {
    const other = await Device.open("cpu");
    const v = other.hostAlloc(1024);
    expect(other.hostAllocations).toBe(1);
    other.close();
    expect(other.hostAllocations).toBe(0);
    expect(v.byteLength).toBe(0);
  });
});

describe("lc_host_alloc / lc_host_free at the C boundary", () => {
  const lib = openLoracuda(device.libraryPath);
  const ctxOf = (): number => {
    const out = new BigUint64Array(1);
    expect(lib.lc_ctx_create(0, out)).toBe(Status.Ok);
    return Number(out[0]);
  };

  test("host and device pointers are tracked apart; unknown pointers are refused; NULL is a no-op", () => {
    const ctx = ctxOf();
    const out = new BigUint64Array(1);
    expect(lib.lc_host_alloc(ctx, 64, out)).toBe(Status.Ok);
    const h = Number(out[0]);
    expect(lib.lc_alloc(ctx, 64, out)).toBe(Status.Ok);
    const d = Number(out[0]);
    // what Device.hostAlloc does: a view over the address; FFIType.ptr passes that address back as is
    const view = new Uint8Array(toArrayBuffer(h, 0, 64));
    expect(Number(ptr(view))).toBe(h);
    expect(Number(ptr(view.subarray(8)))).toBe(h + 8);
    expect(lib.lc_free(ctx, h)).toBe(Status.InvalidArgument);
    expect(lib.lc_host_free(ctx, d)).toBe(Status.InvalidArgument);
    expect(String(lib.lc_last_error(ctx))).toMatch(/lc_host_free: .* was not lc_host_alloc'd on this context/);
    expect(lib.lc_host_free(ctx, 0)).toBe(Status.Ok);
    expect(lib.lc_host_free(ctx, h)).toBe(Status.Ok);
    expect(lib.lc_host_free(ctx, h)).toBe(Status.InvalidArgument);
    expect(lib.lc_host_alloc(ctx, 16, null as unknown as BigUint64Array)).toBe(Status.InvalidArgument);
    expect(lib.lc_host_alloc(ctx, 1 << 20, out)).toBe(Status.Ok); // left for lc_ctx_destroy to free
    lib.lc_ctx_destroy(ctx);
  });
});
