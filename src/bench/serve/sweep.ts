// `lora-serve bench serve`: a sweep of benchmark points over adapters, rate or concurrency, against a
// lora-serve started per point (fresh caches, its adapters written to disk) or an existing URL.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import type { ModelConfig } from "../../model/config.ts";
import { runPoint, type PointResult, type PointSettings, type Progress } from "./run-point.ts";
import { syntheticAdapterName, writeSyntheticAdapters } from "./synthetic-adapters.ts";
import { connectUrl, startLoraServe, type Target } from "./target.ts";

export type SweptVariable = "adapters" | "rate" | "concurrency";

export interface SweepOptions {
  /** An existing OpenAI-compatible server; otherwise a lora-serve is started with serveArgs. */
  url?: string;
  serveArgs: string[];
  /** The base shape synthetic adapters are written for (self-started targets). */
  baseConfig?: ModelConfig;
  /** Synthetic adapters per point (one value, or the swept list); with a URL, how many of its adapters to use. */
  adapters: number[];
  rates: number[];
  concurrencies: number[];
  ranks: number[];
  moduleSets: string[];
  workload: Omit<PointSettings, "url" | "adapters" | "rate" | "concurrency">;
  log: (line: string) => void;
  onProgress?: (point: number, p: Progress, total: number) => void;
}

export interface SweepReport {
  swept: SweptVariable;
  target: string;
  settings: Record<string, unknown>;
  host: { cpus: number; cpu: string; platform: string };
  startedAt: string;
  points: PointResult[];
}

export function sweptVariable(o: Pick<SweepOptions, "adapters" | "rates" | "concurrencies">): SweptVariable {
  const lists = (["adapters", "rate", "concurrency"] as const).filter((k, i) => [o.adapters, o.rates, o.concurrencies][i].length > 1);
  if (lists.length > 1) throw new Error(`sweep one variable at a time (${lists.join(" and ")} both list several values)`);
  return lists[0] ?? (o.concurrencies.length > 0 ? "concurrency" : "rate");
}

export async function runSweep(o: SweepOptions): Promise<SweepReport> {
  const swept = sweptVariable(o);
  if (o.rates.length > 0 && o.concurrencies.length > 0) throw new Error("give --rate or --concurrency, not both");
  const scratch = o.url ? undefined : mkdtempSync(join(tmpdir(), "lora-serve-bench-"));
  try {
    const written = scratch ? writeAdapters(o, join(scratch, "all")) : [];
    const points = pointList(o, swept);
    const results: PointResult[] = [];
    const targetName = o.url ?? `lora-serve ${o.serveArgs.join(" ")}`.trim();
    for (const [i, p] of points.entries()) {
      const target = await openTarget(o, scratch, written, p.adapters, i);
      try {
        const names = pickAdapters(target, p.adapters, !!o.url);
        o.log(`point ${i + 1}/${points.length}: ${describe(p, names.length)}`);
        const result = await runPoint({ ...o.workload, url: target.url, adapters: names, rate: p.rate, concurrency: p.concurrency },
          (progress) => o.onProgress?.(i, progress, o.workload.numPrompts));
        results.push(result);
      } finally {
        await target.stop();
      }
    }
    const cpu = cpus();
    return {
      swept, target: targetName, startedAt: new Date().toISOString(), points: results,
      host: { cpus: cpu.length, cpu: cpu[0]?.model ?? "unknown", platform: `${process.platform}-${process.arch}` },
      settings: { ...o.workload, apiKey: undefined, serveArgs: o.serveArgs, ranks: o.ranks, moduleSets: o.moduleSets, url: o.url },
    };
  } finally {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}

interface Point {
  adapters: number;
  rate?: number;
  concurrency?: number;
}

function pointList(o: SweepOptions, swept: SweptVariable): Point[] {
  const one = <T>(xs: T[]): T | undefined => xs[0];
  const base = { adapters: one(o.adapters) ?? 0, rate: one(o.rates), concurrency: one(o.concurrencies) };
  if (base.rate === undefined && base.concurrency === undefined) throw new Error("give --rate or --concurrency");
  if (swept === "adapters") return o.adapters.map((adapters) => ({ ...base, adapters }));
  if (swept === "rate") return o.rates.map((rate) => ({ ...base, rate }));
  return o.concurrencies.map((concurrency) => ({ ...base, concurrency }));
}

function describe(p: Point, adapters: number): string {
  const load = p.concurrency !== undefined ? `concurrency ${p.concurrency}` : `rate ${p.rate} req/s`;
  return `${adapters} adapters, ${load}`;
}

function writeAdapters(o: SweepOptions, dir: string): string[] {
  const count = Math.max(0, ...o.adapters);
  if (count === 0) return [];
  if (!o.baseConfig) throw new Error("synthetic adapters need the base model's shape");
  o.log(`writing ${count} synthetic adapters (ranks ${o.ranks.join(",")}, modules ${o.moduleSets.join(",")})...`);
  return writeSyntheticAdapters(dir, { config: o.baseConfig, count, ranks: o.ranks, moduleSets: o.moduleSets, seed: o.workload.seed });
}

// A fresh server per point, registering exactly the point's adapters (links into the written set).
async function openTarget(o: SweepOptions, scratch: string | undefined, written: string[], adapters: number, i: number): Promise<Target> {
  if (o.url) return connectUrl(o.url, o.workload.apiKey);
  const args = [...o.serveArgs];
  if (adapters > 0) {
    const dir = join(scratch!, `point-${i}`);
    mkdirSync(dir);
    for (const name of written.slice(0, adapters)) symlinkSync(join(scratch!, "all", name), join(dir, name));
    args.push("--adapters", dir);
  }
  return startLoraServe(args, { apiKey: o.workload.apiKey, log: (line) => process.env.LORA_SERVE_BENCH_SERVER_LOG && o.log(`  server: ${line}`) });
}

/** The point's adapters, most popular first: the synthetic ones, or the first n the URL lists (else its base). */
function pickAdapters(target: Target, n: number, fromUrl: boolean): string[] {
  const listed = target.models.filter((m) => m.parent !== null).map((m) => m.id);
  if (!fromUrl) {
    const names = Array.from({ length: n }, (_, i) => syntheticAdapterName(i));
    const missing = names.filter((x) => !listed.includes(x));
    if (missing.length > 0) throw new Error(`the server does not list ${missing.length} of its adapters (first: ${missing[0]})`);
    return names.length > 0 ? names : [target.models[0].id];
  }
  if (n === 0 || listed.length === 0) return [target.models.find((m) => m.parent === null)?.id ?? target.models[0].id];
  if (listed.length < n) throw new Error(`${target.url} lists ${listed.length} adapters; the point asks for ${n}`);
  return listed.slice(0, n);
}
