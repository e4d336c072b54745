// `lora-serve bench`: measurements that are not unit tests.
import { defineCommand } from "citty";
import { runSchedulerBench } from "../bench/scheduler-bench.ts";
import { CliError, intArg } from "./args.ts";

export const benchCommand = defineCommand({
  meta: { name: "bench", description: "Measure lora-serve (--scheduler: the step loop's own cost, model stubbed out)" },
  args: {
    scheduler: { type: "boolean", description: "Time scheduling + batch building per step with the model stubbed out" },
    seqs: { type: "string", description: "Running sequences (default 256)" },
    adapters: { type: "string", description: "Distinct adapters among them (default 32)" },
    steps: { type: "string", description: "Decode steps to time (default 200)" },
    json: { type: "boolean", description: "Print the result as JSON" },
  },
  run({ args }) {
    if (!args.scheduler) throw new CliError("choose a benchmark: --scheduler (GPU benchmarks come with the CUDA backend's `--synthetic`)");
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
