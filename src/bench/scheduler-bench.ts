// The engine's own per-step cost: scheduling, adapter slots, batch building and bookkeeping, with
// the model replaced by a stub that computes nothing.
import type { LoraAdapter } from "../adapters/lora-adapter.ts";
import { parseModelConfig } from "../model/config.ts";
import { Engine, type EngineAdapters } from "../engine/engine.ts";
import { StubRunner } from "../engine/stub-runner.ts";

export interface SchedulerBenchOptions {
  /** Running sequences. */
  seqs: number;
  /** Distinct adapters among them (plus the base). */
  adapters: number;
  promptTokens: number;
  steps: number;
}

export interface SchedulerBenchResult extends SchedulerBenchOptions {
  /** Median and 90th percentile of one decode step, milliseconds. */
  medianMs: number;
  p90Ms: number;
  tokensPerStep: number;
}

// Llama-2-7B's shape: only the sizes the bookkeeping reads matter.
const CONFIG = parseModelConfig({
  architectures: ["LlamaForCausalLM"], model_type: "llama", vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008,
  num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, max_position_embeddings: 4096,
});

function stubAdapters(count: number): EngineAdapters {
  const names = Array.from({ length: count }, (_, i) => `adapter-${i}`);
  const adapter = { name: "stub", dir: "", modules: [], maxRank: 16, bytes: 0 } as unknown as LoraAdapter;
  return { has: (n: string) => names.includes(n), names: () => names, get: () => adapter, isPinned: () => false, onDrop: () => () => {}, onLoad: () => () => {}, identity: (n: string) => n };
}

export function runSchedulerBench(o: SchedulerBenchOptions): SchedulerBenchResult {
  const blockSize = 16, maxLen = o.promptTokens + o.steps + 16;
  const runner = new StubRunner(CONFIG, {
    act: "F32", blockSize, maxLoras: Math.max(1, o.adapters), numBlocks: o.seqs * Math.ceil(maxLen / blockSize),
    caps: { maxTokens: o.seqs * o.promptTokens, maxSeqs: o.seqs, maxLogitRows: o.seqs, maxBlocksPerSeq: Math.ceil(maxLen / blockSize), maxLoraRank: 16, maxTopLogprobs: 0, maxContextLen: maxLen },
  });
  const engine = new Engine(runner, stubAdapters(o.adapters), maxLen);
  const prompt = Array.from({ length: o.promptTokens }, (_, i) => 1 + (i % 1000));
  for (let i = 0; i < o.seqs; i++) {
    const adapter = o.adapters > 0 && i % (o.adapters + 1) !== 0 ? `adapter-${i % o.adapters}` : null;
    engine.add({ promptIds: prompt, adapter, params: { temperature: 0.7, topP: 0.9, topK: 50, seed: BigInt(i), maxTokens: o.steps + 1, topLogprobs: 0, ignoreEos: true, stopTokenIds: [] } });
  }
  engine.step(); // every prefill at once; what follows are decode steps of all sequences
  const times: number[] = [];
  for (let s = 0; s < o.steps; s++) {
    const t0 = performance.now();
    engine.step();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { ...o, medianMs: times[Math.floor(times.length / 2)], p90Ms: times[Math.floor(times.length * 0.9)], tokensPerStep: o.seqs };
}
