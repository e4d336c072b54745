// A soak's report as Markdown: the setup, one row per round, and the first failures in full.
import type { SoakReport } from "./run-soak.ts";

export function soakMarkdown(r: SoakReport): string {
  const o = r.options;
  const sum = (f: (x: SoakReport["rounds"][number]) => number) => r.rounds.reduce((n, x) => n + f(x), 0);
  const lines = [
    `${sum((x) => x.requests)} requests from ${o.concurrency} concurrent clients over ${o.adapters} adapters and the base model ` +
      `(--max-loras ${o.maxLoras}, --max-cpu-loras ${o.maxCpuLoras}), in ${o.rounds} rounds, seed ${o.seed}; ` +
      `${Math.round(o.abortShare * 100)}% of streams aborted by the client; ${o.runtimeCycles} runtime load → use → unload cycles per round.`,
    "",
    `Solo runs: ${r.soloReferences} (model, prompt) pairs; for prompt ${r.distinctAnswers.prompt}, ${r.distinctAnswers.distinct} distinct answers ` +
      `among ${r.distinctAnswers.models} adapters (the check tells adapters apart).`,
    "",
    "| round | requests | aborted | mismatches | errors | runtime cycles | KV blocks used after | server RSS least (MiB) | most (MiB) | seconds |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...r.rounds.map((x) => `| ${x.round} | ${x.requests} | ${x.aborted} | ${x.mismatches} | ${x.errors} | ${x.runtimeCycles} | ${x.kvBlocksUsedAfter} | ${x.rssMinMiB.toFixed(0)} | ${x.rssMaxMiB.toFixed(0)} | ${x.seconds.toFixed(1)} |`),
    `| all | ${sum((x) => x.requests)} | ${sum((x) => x.aborted)} | ${sum((x) => x.mismatches)} | ${sum((x) => x.errors)} | ${sum((x) => x.runtimeCycles)} | | | | ${sum((x) => x.seconds).toFixed(1)} |`,
    "",
    `Least RSS (sampled every 100 ms, so just after a collection) of the last round over the second's: ${r.rssGrowth.toFixed(3)}. Wall time, with the solo runs and the adapters written: ${r.wallSeconds.toFixed(0)} s.`,
  ];
  if (r.failures.length > 0) lines.push("", "First failures:", "", ...r.failures.map((f) => `- ${f}`));
  return lines.join("\n") + "\n";
}
