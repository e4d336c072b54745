// The adapter figure of `bench --synthetic`, cold beside warm: disk -> host (read, parse, convert), the
// first host -> slot copy (packing into the slot dtype, pinned staging), then the warm median.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadLoraAdapter } from "../adapters/lora-adapter.ts";
import type { ModelRunner } from "../engine/model-runner.ts";
import { writeSyntheticAdapters } from "./serve/synthetic-adapters.ts";

export interface AdapterLoadFigure {
  rank: number;
  modules: string;
  /** Bytes of the adapter in the slot dtype. */
  bytes: number;
  /** Disk -> host: adapter_config.json + safetensors read, checked and converted (file just written: page cache warm). */
  diskToHostMs: number;
  /** The first host -> slot load, packing included. */
  firstMs: number;
  /** Median of the loads after it. */
  medianMs: number;
}

export function measureAdapterLoad(runner: ModelRunner, rank: number, bytes: number): AdapterLoadFigure {
  const dir = mkdtempSync(join(tmpdir(), "lora-serve-adapter-load-"));
  try {
    const [name] = writeSyntheticAdapters(dir, { config: runner.config, count: 1, ranks: [rank], moduleSets: ["qkvo"], seed: 11 });
    const base = { config: runner.config, weight: () => { throw new Error("no DoRA in the benchmark adapter"); } };
    let t0 = performance.now();
    const host = loadLoraAdapter(join(dir, name), name, base, { maxLoraRank: rank });
    const diskToHostMs = performance.now() - t0;
    const device = runner.device;
    t0 = performance.now();
    runner.lora.load(0, host);
    device.sync();
    const firstMs = performance.now() - t0;
    const loads: number[] = [];
    for (let i = 0; i < 7; i++) {
      t0 = performance.now();
      runner.lora.load(0, host);
      device.sync();
      loads.push(performance.now() - t0);
    }
    loads.sort((a, b) => a - b);
    return { rank, modules: "q,k,v,o", bytes, diskToHostMs, firstMs, medianMs: loads[3] };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
