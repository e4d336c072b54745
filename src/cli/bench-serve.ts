// `lora-serve bench serve`: the multi-tenant serving benchmark (thin over src/bench/serve/sweep.ts).
import { defineCommand, type ArgsDef } from "citty";
import { SingleBar } from "cli-progress";
import { readFileSync, writeFileSync } from "node:fs";
import { writeHtmlReport } from "../bench/serve/report-html.ts";
import { formatTable } from "../bench/serve/report-table.ts";
import { runSweep, sweptVariable } from "../bench/serve/sweep.ts";
import { OPTION_DEFS } from "../config/serve-options.ts";
import { log } from "../log.ts";
import { readModelConfig } from "../model/config.ts";
import { syntheticConfig } from "../model/synthetic.ts";
import { CliError, intArg, numberArg } from "./args.ts";
import { defaultModelDir } from "./default-model.ts";

// serve options passed through to a started lora-serve (not --adapters: here it is a count)
const PASSED = OPTION_DEFS.filter((d) => !["adapters", "host", "port", "api-key"].includes(d.flag));

const args: ArgsDef = {
  url: { type: "string", description: "Measure this OpenAI-compatible server (vLLM, SGLang, lora-serve) instead of starting one" },
  ...Object.fromEntries(PASSED.map((d) => [d.flag, { type: d.boolean ? "boolean" : "string", description: `(lora-serve) ${d.description}` }])),
  adapters: { type: "string", description: "Synthetic adapters written for the base (a comma list sweeps); with --url, how many of its adapters (default 8)" },
  ranks: { type: "string", description: "Ranks the synthetic adapters cycle through (default 8,16,32,64)" },
  "target-modules": { type: "string", description: "Module sets they cycle through: qkvo, qv, all (default qkvo,all)" },
  "num-prompts": { type: "string", description: "Requests per point (default 200)" },
  rate: { type: "string", description: "Requests per second, open loop (a comma list sweeps; inf: all at once)" },
  burstiness: { type: "string", description: "Gamma shape of the arrival gaps: 1 Poisson (default), < 1 burstier" },
  concurrency: { type: "string", description: "Closed loop: this many clients (a comma list sweeps)" },
  zipf: { type: "string", description: "Adapter popularity ∝ 1/rank^ALPHA (default 0: uniform)" },
  "input-len": { type: "string", description: "Prompt words: N or MIN-MAX (default 64)" },
  "output-len": { type: "string", description: "Output tokens: N or MIN-MAX (default 32)" },
  "shared-prefix": { type: "string", description: "Words of a system prompt every request starts with (default 0): measures the prefix cache" },
  prompts: { type: "string", description: "JSONL of real prompts: {\"prompt\": ..., \"max_tokens\"?: N} a line" },
  "slo-ttft": { type: "string", description: "Time-to-first-token SLO in seconds (default 1)" },
  "ignore-eos": { type: "boolean", default: true, description: "Ask for exactly the output length (--no-ignore-eos: stop at EOS)" },
  temperature: { type: "string", description: "Sampling temperature of every request (default 0: greedy)" },
  "top-p": { type: "string", description: "top_p of every request (default 1)" },
  stop: { type: "string", description: "A stop string sent with every request (repeatable as a comma list)" },
  seed: { type: "string", description: "Workload seed (default 1)" },
  timeout: { type: "string", description: "Seconds before one request counts as failed (default 600)" },
  "api-key": { type: "string", description: "Bearer token the clients send (--url), or that the started lora-serve requires" },
  out: { type: "string", description: "Write the report as JSON here" },
  report: { type: "string", description: "Write a self-contained HTML page with charts here" },
};

const list = (v: unknown, flag: string, parse: (x: string, f: string) => number | undefined): number[] =>
  v === undefined ? [] : String(v).split(",").map((x) => (x.trim() === "inf" ? Infinity : parse(x.trim(), flag)!));

export const benchServeCommand = defineCommand({
  meta: { name: "serve", description: "Serving benchmark: many adapters, random arrivals, TTFT / TPOT / throughput per point" },
  args,
  async run({ args: a }) {
    const adapters = list(a.adapters, "--adapters", intArg);
    const rates = list(a.rate, "--rate", numberArg), concurrencies = list(a.concurrency, "--concurrency", intArg);
    if (rates.length === 0 && concurrencies.length === 0) rates.push(4);
    const serveArgs = PASSED.flatMap((d) => {
      const v = a[d.flag];
      if (v === undefined || v === false) return [];
      return v === true ? [`--${d.flag}`] : [`--${d.flag}`, String(v)];
    }).concat(a["api-key"] ? ["--api-key", String(a["api-key"])] : []);
    const options = {
      url: a.url as string | undefined, serveArgs, baseConfig: a.url ? undefined : await baseConfig(a),
      adapters: adapters.length > 0 ? adapters : [8], rates, concurrencies,
      ranks: list(a.ranks ?? "8,16,32,64", "--ranks", intArg), moduleSets: String(a["target-modules"] ?? "qkvo,all").split(","),
      workload: {
        numPrompts: intArg(a["num-prompts"] as string | undefined, "--num-prompts") ?? 200,
        burstiness: numberArg(a.burstiness as string | undefined, "--burstiness") ?? 1,
        zipf: numberArg(a.zipf as string | undefined, "--zipf") ?? 0,
        inputLen: String(a["input-len"] ?? "64"), outputLen: String(a["output-len"] ?? "32"), promptFile: a.prompts as string | undefined,
        sharedPrefix: a["shared-prefix"] === undefined ? 0 : intArg(String(a["shared-prefix"]), "--shared-prefix")!,
        ignoreEos: a["ignore-eos"] !== false, sloTtft: numberArg(a["slo-ttft"] as string | undefined, "--slo-ttft") ?? 1,
        seed: intArg(a.seed as string | undefined, "--seed") ?? 1, timeoutMs: 1000 * (numberArg(a.timeout as string | undefined, "--timeout") ?? 600),
        temperature: numberArg(a.temperature as string | undefined, "--temperature") ?? 0,
        topP: numberArg(a["top-p"] as string | undefined, "--top-p") ?? 1,
        apiKey: a["api-key"] as string | undefined, stop: a.stop === undefined ? undefined : String(a.stop).split(","),
      },
      log: (line: string) => log.info(line),
    };
    sweptVariable(options); // one swept variable, checked before anything is written
    const bar = process.stderr.isTTY ? new SingleBar({ format: "  {bar} {value}/{total} done, {sent} sent, {rate} req/s, {errors} errors", hideCursor: true }) : null;
    let barPoint = -1;
    const report = await runSweep({
      ...options,
      onProgress: (point, p, total) => {
        if (!bar) return;
        if (point !== barPoint) bar.start(total, 0, { sent: 0, rate: "0.0", errors: 0 });
        barPoint = point;
        bar.update(p.done, { sent: p.sent, rate: p.elapsed > 0 ? (p.done / p.elapsed).toFixed(1) : "0.0", errors: p.errors });
        if (p.done === total) bar.stop();
      },
    });
    console.log(formatTable(report));
    if (a.out) writeFileSync(String(a.out), JSON.stringify(report, null, 2));
    if (a.report) writeHtmlReport(String(a.report), report);
    const lost = report.points.reduce((n, p) => n + p.errors, 0);
    if (lost > 0) {
      log.warn(`${lost} requests failed (their messages are listed under the table)`);
      process.exitCode = 1;
    }
  },
});

async function baseConfig(a: Record<string, unknown>) {
  if (a.synthetic) {
    const s = String(a.synthetic);
    return syntheticConfig(s.endsWith(".json") ? JSON.parse(readFileSync(s, "utf8")) : s);
  }
  if (typeof a.model === "string") {
    if (a.model.includes(",")) throw new CliError("bench serve measures one base model: give one --model");
    return readModelConfig(a.model);
  }
  return readModelConfig(await defaultModelDir());
}

