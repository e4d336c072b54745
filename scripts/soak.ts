#!/usr/bin/env bun
// The soak (hardening issue): `bun scripts/soak.ts` runs 10,000 greedy requests from 200 concurrent
// clients over 500 adapters with --max-loras 4 on the CPU twin, with runtime loads, unloads and
// client aborts, and checks every answer against its solo run. Exits 1 on any failure.
import { defineCommand, runMain } from "citty";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { runSoak } from "../src/bench/soak/run-soak.ts";
import { soakMarkdown } from "../src/bench/soak/soak-report.ts";
import { log } from "../src/log.ts";

const int = (v: string, flag: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} must be a whole number, got ${v}`);
  return n;
};

const main = defineCommand({
  meta: { name: "soak", description: "Many adapters, many clients, rounds of greedy traffic checked against solo runs" },
  args: {
    model: { type: "string", default: join(import.meta.dir, "../test/fixtures/hf/models/tiny-llama2"), description: "Base model directory" },
    requests: { type: "string", default: "10000" },
    concurrency: { type: "string", default: "200" },
    adapters: { type: "string", default: "500" },
    "max-loras": { type: "string", default: "4" },
    "max-cpu-loras": { type: "string", default: "32" },
    rounds: { type: "string", default: "10" },
    "runtime-cycles": { type: "string", default: "5", description: "Runtime load/use/unload cycles per round" },
    "abort-share": { type: "string", default: "0.05", description: "Share of streams the client abandons" },
    seed: { type: "string", default: "1" },
    out: { type: "string", description: "Write the report as JSON here" },
    markdown: { type: "string", description: "Write the report as Markdown here" },
  },
  async run({ args: a }) {
    const report = await runSoak({
      modelDir: a.model, requests: int(a.requests, "--requests"), concurrency: int(a.concurrency, "--concurrency"),
      adapters: int(a.adapters, "--adapters"), maxLoras: int(a["max-loras"], "--max-loras"), maxCpuLoras: int(a["max-cpu-loras"], "--max-cpu-loras"),
      rounds: int(a.rounds, "--rounds"), runtimeCycles: int(a["runtime-cycles"], "--runtime-cycles"), abortShare: Number(a["abort-share"]),
      seed: int(a.seed, "--seed"), log: (line) => log.info(line),
    });
    const write = (path: string | undefined, text: string) => {
      if (!path) return;
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
    };
    write(a.out, JSON.stringify(report, null, 2) + "\n");
    const md = soakMarkdown(report);
    write(a.markdown, md);
    console.log(md);
    const failed = report.rounds.some((r) => r.mismatches + r.errors + r.kvBlocksUsedAfter > 0) || report.rssGrowth > 1.1;
    if (failed) process.exitCode = 1;
  },
});

void runMain(main);
