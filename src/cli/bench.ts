// `lora-serve bench`: measurements that are not unit tests.
import { defineCommand } from "citty";
import { readFileSync, writeFileSync } from "node:fs";
import { runSchedulerBench } from "../bench/scheduler-bench.ts";
import { openProfileRanges } from "../bench/profile-ranges.ts";
import { runSyntheticBench, type SyntheticReport } from "../bench/synthetic-bench.ts";
import { runGrammarBench } from "../bench/grammar-bench.ts";
import { loadModel } from "../engine/load-model.ts";
import { defaultModelDir } from "./default-model.ts";
import { log } from "../log.ts";
import { openDevice, type DeviceChoice } from "../native/open-device.ts";
import { CliError, intArg } from "./args.ts";

export const benchCommand = defineCommand({
  meta: { name: "bench", description: "Measure lora-serve: `bench serve` (the serving benchmark), --synthetic (one forward step), --scheduler, --grammar (structured output)" },
  subCommands: { serve: () => import("./bench-serve.ts").then((m) => m.benchServeCommand) },
  args: {
    scheduler: { type: "boolean", description: "Time scheduling + batch building per step with the model stubbed out" },
    synthetic: { type: "string", description: "A model shape (llama-2-7b, llama-3-8b, mistral-7b, tiny, or a config.json) with random weights on the device" },
    device: { type: "enum", options: ["cpu", "cuda", "auto"], default: "auto" },
    "batch-sizes": { type: "string", description: "Decode batch sizes (default 1,8,32,64)" },
    context: { type: "string", description: "Context length of decoding sequences (default 1024)" },
    "lora-count": { type: "string", description: "Distinct random adapters (default 32)" },
    prefill: { type: "string", description: "Prompt length for the prefill figure (default 2048)" },
    out: { type: "string", description: "Write the synthetic report as JSON here" },
    seqs: { type: "string", description: "Running sequences (default 256; --grammar: 64)" },
    adapters: { type: "string", description: "Distinct adapters among them (default 32)" },
    steps: { type: "string", description: "Decode steps to time (default 200)" },
    grammar: { type: "boolean", description: "Structured output: mask time per step for --seqs sequences under random JSON schemas, beside the same run unconstrained" },
    model: { type: "string", description: "With --grammar: the model directory (default: the embedded tiny model)" },
    json: { type: "boolean", description: "Print the result as JSON" },
    profile: { type: "boolean", description: "With --synthetic on cuda: bracket one step of each figure for `ncu --profile-from-start off`" },
    ceilings: { type: "enum", options: ["full", "small"], description: "Ceiling sizes: full (1 GiB copy, 8192³ GEMM; the GPU default) or small (16 MiB, 256³)" },
  },
  async run({ args }) {
    if (args._[0] === "serve") return; // citty ran the subcommand already
    if (args.synthetic) return synthetic(args);
    if (args.grammar) return grammar(args);
    if (!args.scheduler) throw new CliError("choose a benchmark: serve, --synthetic <preset>, --scheduler or --grammar");
    const result = runSchedulerBench({
      seqs: intArg(args.seqs, "--seqs") ?? 256,
      adapters: intArg(args.adapters, "--adapters") ?? 32,
      promptTokens: 128,
      steps: intArg(args.steps, "--steps") ?? 200,
    });
    if (args.json) {
      console.log(JSON.stringify(result));
      return;
    }
    console.log(`scheduler step, model stubbed out: ${result.seqs} running sequences over ${result.adapters} adapters + base`);
    console.log(`  median ${result.medianMs.toFixed(3)} ms, p90 ${result.p90Ms.toFixed(3)} ms per step (target < 1 ms), ${result.tokensPerStep} tokens per step`);
  },
});

async function grammar(args: Record<string, unknown>): Promise<void> {
  const seqs = intArg(args.seqs as string | undefined, "--seqs") ?? 64;
  const device = await openDevice((args.device ?? "auto") as DeviceChoice);
  try {
    const model = loadModel({ modelDir: (args.model as string | undefined) ?? (await defaultModelDir()), device, maxSeqs: seqs });
    const r = await runGrammarBench(model, { seqs, maxTokens: 256, device: device.kind });
    model.grammar.close();
    if (args.json) return console.log(JSON.stringify(r));
    const ms = (x: number) => x.toFixed(3);
    console.log(`structured output: ${r.seqs} sequences, each under its own random JSON schema (vocabulary ${r.vocab}, ${r.device})`);
    console.log(`  compile: median ${ms(r.compileMs.median)} ms, max ${ms(r.compileMs.max)} ms; a cached schema ${ms(r.compileMs.cached)} ms`);
    console.log(`  constrained: ${r.constrained.steps} steps, median step ${ms(r.constrained.stepMsMedian)} ms; masks ${ms(r.constrained.maskMsMedian)} ms a step (${(100 * r.constrained.maskShareOfStep).toFixed(1)}% of the step, on the grammar thread)`);
    console.log(`  waited for masks after the forward pass: ${ms(r.constrained.waitedMsMedian)} ms a step (${(100 * r.constrained.exposedShareOfStep).toFixed(1)}% of the step); steps deferred: ${r.constrained.deferredSteps}`);
    console.log(`  the same sequences unconstrained: median step ${ms(r.free.stepMsMedian)} ms; constrained / free = ${r.stepRatio.toFixed(3)}`);
  } finally {
    device.close();
  }
}

async function synthetic(args: Record<string, unknown>): Promise<void> {
  const preset = String(args.synthetic);
  const device = await openDevice((args.device as DeviceChoice) ?? "auto");
  const profile = args.profile ? openProfileRanges(device) : undefined;
  try {
    const sizes = String(args["batch-sizes"] ?? "1,8,32,64").split(",").map((x) => intArg(x, "--batch-sizes")!);
    const report = runSyntheticBench({
      preset: preset.endsWith(".json") ? JSON.parse(readFileSync(preset, "utf8")) : preset,
      device,
      batchSizes: sizes,
      contextLen: intArg(args.context as string | undefined, "--context") ?? 1024,
      steps: intArg(args.steps as string | undefined, "--steps") ?? 20,
      adapters: intArg(args["lora-count"] as string | undefined, "--lora-count") ?? 32,
      prefillLen: intArg(args.prefill as string | undefined, "--prefill") ?? 2048,
      log: (line) => log.info(line),
      profile,
      ceilings: args.ceilings as "full" | "small" | undefined,
    });
    if (args.out) writeFileSync(String(args.out), JSON.stringify(report, null, 2));
    if (args.json) console.log(JSON.stringify(report));
    else printReport(report);
  } finally {
    profile?.free();
    device.close();
  }
}

function printReport(r: SyntheticReport): void {
  console.log(`synthetic ${r.model} (${r.dtype}) on ${r.device}: weights ${(r.weightBytes / 1e9).toFixed(2)} GB; a batch-1 step reads ${(r.floorBytes / 1e9).toFixed(3)} GB (layers, norms, LM head, one embedding row, KV at the context)`);
  console.log(`ceilings: copy ${r.ceilings.copyGBps.toFixed(0)} GB/s (read + write), GEMM ${r.ceilings.gemmTflops.toPrecision(3)} TFLOP/s`);
  console.log("decode  batch  adapters               graphs  ms/step   tokens/s  bytes/step/time : copy bw");
  for (const d of r.decode) {
    console.log(`        ${String(d.batch).padStart(5)}  ${d.adapters.padEnd(21)}  ${String(d.graphs).padEnd(6)}  ${d.stepMs.toFixed(3).padStart(7)}  ${d.tokensPerSecond.toFixed(0).padStart(8)}  ${d.bandwidthRatio.toFixed(3)}`);
  }
  const p = r.prefill;
  console.log(`prefill ${p.tokens} tokens: ${p.ms.toFixed(1)} ms, ${p.tokensPerSecond.toFixed(0)} tokens/s; GEMM-rate ceiling ${p.ceilingTokensPerSecond.toFixed(0)} (${p.ratio.toFixed(3)} x)`);
  const a = r.adapterLoad;
  console.log(`adapter r${a.rank} ${a.modules} (${(a.bytes / 1e6).toFixed(1)} MB): disk -> host ${a.diskToHostMs.toFixed(1)} ms (cold: parse + convert), ` +
    `host -> slot first ${a.firstMs.toFixed(1)} ms (packing, pinned staging), warm median ${a.medianMs.toFixed(3)} ms`);
  for (const c of r.checks) console.log(`${c.pass ? "PASS" : "MISS"}  ${c.what}: ${c.measured} (target ${c.target})`);
}
