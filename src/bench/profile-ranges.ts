// Profiled ranges for `bench --synthetic --profile`: the bench brackets one step of each figure with
// cuProfilerStart/Stop, so a run under `ncu --profile-from-start off` records just those kernels.
// Each range opens with one fill_random kernel (no profiled step launches one), so the kernel list
// splits back into ranges, in the order of `labels` (scripts/kernel-breakdown.ts).
import { dlopen, FFIType } from "bun:ffi";
import type { Device, DevPtr } from "../native/device.ts";

export interface ProfileRanges {
  /** runs `body` with the profiler on, marked as range `label` */
  range(label: string, body: () => void): void;
  labels: string[];
  free(): void;
}

export function openProfileRanges(device: Device): ProfileRanges {
  if (device.kind !== "cuda") throw new Error("--profile needs --device cuda");
  const driver = dlopen("libcuda.so.1", {
    cuProfilerStart: { args: [], returns: FFIType.i32 },
    cuProfilerStop: { args: [], returns: FFIType.i32 },
  });
  const marker: DevPtr = device.alloc(256);
  const labels: string[] = [];
  return {
    labels,
    range(label, body) {
      device.sync();
      const status = driver.symbols.cuProfilerStart();
      if (status !== 0) throw new Error(`cuProfilerStart failed: CUresult ${status}`);
      labels.push(label);
      device.fillRandom({ dtype: "F32", ptr: marker, n: 1, seed: 0, scale: 1 });
      body();
      device.sync();
      driver.symbols.cuProfilerStop();
    },
    free() {
      device.free(marker);
      driver.close();
    },
  };
}
