// The soak: a lora-serve with hundreds of synthetic adapters and few device slots, driven by many
// concurrent greedy clients in rounds, with runtime loads and unloads and client aborts mixed in.
// Every answer is checked against its solo run; after each round the KV cache must be empty, and
// the server's resident memory is recorded to show it stays flat.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readModelConfig } from "../../model/config.ts";
import { writeSyntheticAdapters } from "../serve/synthetic-adapters.ts";
import { startLoraServe, type Target } from "../serve/target.ts";
import { parsePrometheus } from "../serve/target-metrics.ts";
import { mismatch, referenceKey, type SoloReference } from "./soak-check.ts";
import { sendSoakRequest } from "./soak-client.ts";
import { planSoak, SOAK_MAX_TOKENS, type SoakRequest } from "./soak-plan.ts";
import { runtimeCycle, RUNTIME_PROMPTS } from "./runtime-cycle.ts";

export interface SoakOptions {
  modelDir: string;
  requests: number;
  concurrency: number;
  adapters: number;
  maxLoras: number;
  maxCpuLoras: number;
  rounds: number;
  /** Runtime load → use → unload cycles per round, run beside the traffic. */
  runtimeCycles: number;
  abortShare: number;
  seed: number;
  log: (line: string) => void;
}

export interface RoundReport {
  round: number;
  requests: number;
  aborted: number;
  mismatches: number;
  errors: number;
  runtimeCycles: number;
  kvBlocksUsedAfter: number;
  /** The server's resident memory sampled every 100 ms through the round: its least (after a GC) and most. */
  rssMinMiB: number;
  rssMaxMiB: number;
  seconds: number;
}

export interface SoakReport {
  options: Omit<SoakOptions, "log">;
  soloReferences: number;
  /** Distinct solo answers among the adapters for one prompt: the check can tell adapters apart. */
  distinctAnswers: { prompt: number; distinct: number; models: number };
  rounds: RoundReport[];
  /** The first failures in full (mismatches and errors). */
  failures: string[];
  wallSeconds: number;
  /** The least resident memory of the last round over the second's (the first warms the host tier). */
  rssGrowth: number;
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), "lora-serve-soak-"));
  try {
    const names = writeSyntheticAdapters(dir, {
      config: readModelConfig(o.modelDir), count: o.adapters, ranks: [8, 16], moduleSets: ["qkvo", "all"], seed: o.seed, amplitude: 0.25,
    });
    o.log(`wrote ${names.length} adapters to ${dir}`);
    const target = await startLoraServe(["--model", o.modelDir, "--adapters", dir, "--device", "cpu", "--max-loras", String(o.maxLoras),
      "--max-cpu-loras", String(o.maxCpuLoras), "--enable-runtime-lora-updating", "--allowed-adapter-roots", dir, "--max-queue", "100000"]);
    try {
      const base = target.models.find((m) => m.parent === null)!.id;
      const plan = planSoak({ requests: o.requests, models: [base, ...names], seed: o.seed, abortShare: o.abortShare });
      const runtimeSources = Array.from({ length: o.rounds * o.runtimeCycles }, (_, i) => names[i % names.length]);
      const refs = await soloReferences(target.url, base, [...plan, ...runtimeSources.flatMap((model) => RUNTIME_PROMPTS.map((prompt) => ({ model, prompt })))], o.log);
      const report: SoakReport = {
        options: { ...o, log: undefined } as Omit<SoakOptions, "log">, soloReferences: refs.size, distinctAnswers: distinctAnswers(refs, names),
        rounds: [], failures: [], wallSeconds: 0, rssGrowth: 0,
      };
      const perRound = Math.ceil(plan.length / o.rounds);
      for (let round = 0; round < o.rounds; round++) {
        const chunk = plan.slice(round * perRound, (round + 1) * perRound);
        const r = await runRound(target, base, round, chunk, refs, names, dir, o, report.failures);
        report.rounds.push(r);
        o.log(`round ${round + 1}/${o.rounds}: ${r.requests} requests (${r.aborted} aborted), ${r.mismatches} mismatches, ${r.errors} errors, ` +
          `${r.runtimeCycles} runtime cycles, KV used after ${r.kvBlocksUsedAfter}, RSS ${r.rssMinMiB.toFixed(0)}–${r.rssMaxMiB.toFixed(0)} MiB, ${r.seconds.toFixed(1)} s`);
      }
      const rss = report.rounds.map((r) => r.rssMinMiB);
      report.rssGrowth = rss.length > 1 ? rss[rss.length - 1] / rss[1] : 1;
      report.wallSeconds = (performance.now() - t0) / 1000;
      return report;
    } finally {
      await target.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Each (model, prompt) the plan uses, run alone at the longest length: the answers to check against. */
async function soloReferences(url: string, base: string, uses: { model: string; prompt: number }[], log: (l: string) => void): Promise<Map<string, SoloReference>> {
  const refs = new Map<string, SoloReference>();
  const pairs = [...new Map(uses.map((r) => [referenceKey(r.model, r.prompt), r])).values()];
  log(`solo runs: ${pairs.length} (model, prompt) pairs, one at a time`);
  for (const r of pairs) {
    const o = await sendSoakRequest(url, base, { model: r.model, prompt: r.prompt, route: "json", maxTokens: SOAK_MAX_TOKENS, abortAfter: 0 });
    if (o.error) throw new Error(`solo run of ${r.model} failed: ${o.error}`);
    refs.set(referenceKey(r.model, r.prompt), { ids: o.ids, text: o.text });
  }
  return refs;
}

function distinctAnswers(refs: Map<string, SoloReference>, names: string[]): SoakReport["distinctAnswers"] {
  const answers = names.map((n) => refs.get(referenceKey(n, 1))).filter((r) => r !== undefined);
  return { prompt: 1, distinct: new Set(answers.map((r) => r.ids.join(","))).size, models: answers.length };
}

async function runRound(target: Target, base: string, round: number, chunk: SoakRequest[], refs: Map<string, SoloReference>,
  names: string[], dir: string, o: SoakOptions, failures: string[]): Promise<RoundReport> {
  const t0 = performance.now();
  const r: RoundReport = {
    round: round + 1, requests: chunk.length, aborted: 0, mismatches: 0, errors: 0, runtimeCycles: 0, kvBlocksUsedAfter: 0, rssMinMiB: Infinity, rssMaxMiB: 0, seconds: 0,
  };
  const sampleRss = () => {
    const mib = target.pid ? residentMiB(target.pid) : NaN;
    r.rssMinMiB = Math.min(r.rssMinMiB, mib);
    r.rssMaxMiB = Math.max(r.rssMaxMiB, mib);
  };
  const sampler = setInterval(sampleRss, 100);
  const fail = (what: string) => failures.length < 50 && failures.push(`round ${round + 1}: ${what}`);
  let next = 0;
  const client = async () => {
    while (next < chunk.length) {
      const req = chunk[next++];
      const out = await sendSoakRequest(target.url, base, req);
      if (out.aborted) r.aborted++;
      if (out.error) {
        r.errors++;
        fail(`${req.route} ${req.model}: ${out.error}`);
        continue;
      }
      const why = mismatch(req, out, refs.get(referenceKey(req.model, req.prompt))!);
      if (why) {
        r.mismatches++;
        fail(`${req.route} ${req.model} prompt ${req.prompt} max_tokens ${req.maxTokens}: ${why}`);
      }
    }
  };
  const cycles = async () => {
    for (let k = 0; k < o.runtimeCycles; k++) {
      const source = names[(round * o.runtimeCycles + k) % names.length];
      const problem = await runtimeCycle(target.url, base, `runtime-${round}-${k}`, join(dir, source), refs, source);
      if (problem) {
        r.errors++;
        fail(`runtime cycle ${k} (${source}): ${problem}`);
      } else r.runtimeCycles++;
    }
  };
  await Promise.all([...Array.from({ length: o.concurrency }, client), cycles()]);
  r.kvBlocksUsedAfter = await kvBlocksUsedWhenIdle(target.url);
  if (r.kvBlocksUsedAfter !== 0) fail(`${r.kvBlocksUsedAfter} KV blocks still used after every request finished`);
  clearInterval(sampler);
  sampleRss();
  r.seconds = (performance.now() - t0) / 1000;
  return r;
}

/** KV blocks in use once the server has cleaned up after aborted streams (up to 10 s). */
async function kvBlocksUsedWhenIdle(url: string): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const samples = parsePrometheus(await (await fetch(`${url}/metrics`)).text());
    const used = samples.filter((s) => s.name === "lora_serve_kv_blocks" && s.labels.state === "used").reduce((n, s) => n + s.value, 0);
    if (used === 0 || Date.now() > deadline) return used;
    await Bun.sleep(100);
  }
}

function residentMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}
