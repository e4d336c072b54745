// `lora-serve bench --synthetic`: a real-shaped model with random weights and random adapters on
// the device; the device's ceilings and the engine's figures measured side by side in one run.
import { LORA_MODULES, moduleShape, type LoraModule } from "../model/lora-modules.ts";
import type { Device, NumericDType } from "../native/device.ts";
import { NUMERIC_DTYPE_BYTES } from "../native/device.ts";
import { BlockManager } from "../engine/block-manager.ts";
import { buildBatch, type ScheduledSeq } from "../engine/batch-builder.ts";
import { ModelRunner } from "../engine/model-runner.ts";
import { Sequence } from "../engine/sequence.ts";
import { measureAdapterLoad, type AdapterLoadFigure } from "./adapter-load-bench.ts";
import { distinctAdaptersCheck } from "./distinct-adapters.ts";
import type { ProfileRanges } from "./profile-ranges.ts";
import { adapterBytes, decodeStepBytes } from "./step-bytes.ts";
import { randomWeights, syntheticConfig } from "../model/synthetic.ts";

export interface SyntheticBenchOptions {
  preset: string | Record<string, unknown>;
  device: Device;
  batchSizes: number[];
  contextLen: number;
  steps: number;
  adapters: number;
  prefillLen: number;
  log?: (line: string) => void;
  /** profile one eager step of each decode figure and the prefill (see profile-ranges.ts) */
  profile?: ProfileRanges;
  /** Ceiling sizes: "full" (1 GiB copy, 8192³ GEMM; the default on a GPU) or "small" (16 MiB, 256³: the CPU's
   *  default, and a GPU emulator's, where the full sizes take many minutes; ratios then mean little). */
  ceilings?: "full" | "small";
}

export interface DecodeFigure {
  batch: number;
  adapters: string;
  graphs: boolean;
  stepMs: number;
  tokensPerSecond: number;
  bytesPerStep: number;
  /** bytes per step / step time, over the measured copy bandwidth */
  bandwidthRatio: number;
}

export interface SyntheticReport {
  device: string;
  model: string;
  dtype: NumericDType;
  weightBytes: number;
  /** Bytes a batch-1 decode step at the report's context must read (see step-bytes.ts): the floor's numerator. */
  floorBytes: number;
  ceilings: { copyGBps: number; gemmTflops: number };
  decode: DecodeFigure[];
  prefill: { tokens: number; ms: number; tokensPerSecond: number; ceilingTokensPerSecond: number; ratio: number };
  adapterLoad: AdapterLoadFigure;
  checks: { what: string; target: string; measured: string; pass: boolean }[];
  /** with --profile: the profiled ranges, in order */
  profiledRanges?: string[];
}

const QKVO: LoraModule[] = ["q_proj", "k_proj", "v_proj", "o_proj"];

function time(device: Device, reps: number, fn: () => void): number {
  // two warm-ups: a decode graph runs eagerly once, then is recorded; only replays are timed
  fn();
  fn();
  device.sync();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  device.sync();
  return (performance.now() - t0) / reps;
}

function measureCeilings(device: Device, dtype: NumericDType, big: boolean): { copyGBps: number; gemmTflops: number } {
  const bytes = big ? 1 << 30 : 1 << 24;
  const src = device.alloc(bytes), dst = device.alloc(bytes);
  device.fillRandom({ dtype: "F32", ptr: src, n: bytes / 4, seed: 7, scale: 1 });
  const copyMs = time(device, 10, () => device.copy(dst, src, bytes));
  device.free(src);
  device.free(dst);
  const n = big ? 8192 : 256;
  const e = NUMERIC_DTYPE_BYTES[dtype];
  const x = device.alloc(n * n * e), w = device.alloc(n * n * e), y = device.alloc(n * n * e);
  device.fillRandom({ dtype, ptr: x, n: n * n, seed: 8, scale: 1 });
  device.fillRandom({ dtype, ptr: w, n: n * n, seed: 9, scale: 1 / Math.sqrt(n) });
  const gemmMs = time(device, 10, () => device.linear({ act: dtype, x, wt: dtype, w, m: n, n, k: n, y }));
  for (const p of [x, w, y]) device.free(p);
  // a copy reads and writes every byte
  return { copyGBps: (2 * bytes) / (copyMs / 1000) / 1e9, gemmTflops: (2 * n * n * n) / (gemmMs / 1000) / 1e12 };
}


export function runSyntheticBench(o: SyntheticBenchOptions): SyntheticReport {
  const log = o.log ?? (() => {});
  const { device } = o;
  const config = syntheticConfig(o.preset);
  const dtype: NumericDType = device.kind === "cpu" ? "F32" : "F16";
  log(`ceilings...`);
  const ceilings = measureCeilings(device, dtype, (o.ceilings ?? (device.kind === "cpu" ? "small" : "full")) === "full");
  log(`copy ${ceilings.copyGBps.toFixed(0)} GB/s, GEMM ${ceilings.gemmTflops.toFixed(1)} TFLOP/s; building the model...`);
  const weights = randomWeights(device, config, dtype);
  const maxBatch = Math.max(...o.batchSizes);
  const blockSize = 16;
  const maxContext = Math.max(o.contextLen + 1, o.prefillLen + 1);
  const maxBlocksPerSeq = Math.ceil(maxContext / blockSize);
  const numBlocks = maxBatch * Math.ceil((o.contextLen + 1) / blockSize) + maxBlocksPerSeq;
  const runner = new ModelRunner(device, config, weights, {
    act: dtype, numBlocks, blockSize, maxLoras: Math.max(1, o.adapters),
    caps: { maxTokens: Math.max(o.prefillLen, maxBatch), maxSeqs: maxBatch, maxLogitRows: maxBatch, maxBlocksPerSeq, maxLoraRank: 64, maxTopLogprobs: 0, maxContextLen: maxContext },
  });
  const blocks = new BlockManager(numBlocks, blockSize);
  // random keys and values: timing over zeros can flatter a kernel (METHOD.md)
  const kvElems = (numBlocks + 1) * blockSize * config.numKvHeads * config.headDim;
  for (let l = 0; l < config.numLayers; l++) {
    device.fillRandom({ dtype, ptr: runner.kv.k[l], n: kvElems, seed: 500 + l, scale: 1 });
    device.fillRandom({ dtype, ptr: runner.kv.v[l], n: kvElems, seed: 600 + l, scale: 1 });
  }
  const bandwidth = ceilings.copyGBps * 1e9;
  const params = { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 1, topLogprobs: 0, ignoreEos: true, stopTokenIds: [] };

  const decode: DecodeFigure[] = [];
  const modes = [
    { name: "none", rank: 0, modules: [] as LoraModule[], slotOf: (_: number) => -1, distinct: 0 },
    { name: "1 shared r16 qkvo", rank: 16, modules: QKVO, slotOf: (_: number) => 0, distinct: 1 },
    { name: "distinct r16 qkvo", rank: 16, modules: QKVO, slotOf: (s: number) => s % o.adapters, distinct: o.adapters },
    { name: "distinct r64 all7", rank: 64, modules: [...LORA_MODULES], slotOf: (s: number) => s % o.adapters, distinct: o.adapters },
  ];
  let loadedMode = "";
  let distinct: ReturnType<typeof distinctAdaptersCheck> | undefined;
  for (const mode of modes) {
    if (mode.rank > 0 && loadedMode !== `${mode.rank}:${mode.modules.length}`) {
      for (let s = 0; s < o.adapters; s++) runner.lora.loadRandom(s, { rank: mode.rank, modules: mode.modules, seed: 100 + s });
      loadedMode = `${mode.rank}:${mode.modules.length}`;
    }
    for (const batchSize of o.batchSizes) {
      const seqs = Array.from({ length: batchSize }, (_, s) => {
        const seq = new Sequence(s, Array.from({ length: o.contextLen }, (_, i) => (i * 7 + s) % config.vocabSize), null, params);
        seq.numComputed = o.contextLen - 1;
        if (!blocks.ensure(seq, o.contextLen)) throw new Error("the benchmark's KV cache is too small");
        return seq;
      });
      const items: ScheduledSeq[] = seqs.map((seq, s) => ({ seq, numTokens: 1, slot: mode.slotOf(s), sample: true }));
      items.sort((a, b) => a.slot - b.slot);
      const batch = buildBatch(items, blockSize, maxBlocksPerSeq);
      const rows = items.map(() => ({ temperature: 0, topK: 0, topP: 1, minP: 0, uniform: 0 }));
      const adapterRead = Math.min(batchSize, mode.distinct) * adapterBytes(config, mode.rank, mode.modules, dtype);
      const bytesPerStep = decodeStepBytes(config, dtype, { weightBytes: weights.bytes, batch: batchSize, contextLen: o.contextLen, adapterBytes: adapterRead });
      for (const graphs of device.kind === "cuda" ? [false, true] : [false]) {
        runner.useGraphs = graphs;
        const ms = time(device, o.steps, () => {
          runner.run(batch);
          runner.sample(rows, 0);
        });
        decode.push({ batch: batchSize, adapters: mode.name, graphs, stepMs: ms, tokensPerSecond: batchSize / (ms / 1000), bytesPerStep, bandwidthRatio: bytesPerStep / (ms / 1000) / bandwidth });
        log(`decode batch ${batchSize}, adapters ${mode.name}, graphs ${graphs}: ${ms.toFixed(3)} ms/step`);
        if (!graphs) o.profile?.range(`decode batch ${batchSize}, ${mode.name}`, () => {
          runner.run(batch);
          runner.sample(rows, 0);
        });
      }
      if (mode.name === "distinct r16 qkvo" && batchSize === Math.min(maxBatch, o.adapters) && batchSize > 1) {
        distinct = distinctAdaptersCheck(runner, items, blockSize, maxBlocksPerSeq, o.adapters);
      }
      for (const seq of seqs) blocks.release(seq);
    }
  }

  // prefill: one long prompt; a GEMM-bound pass over 2 x (projection parameters) FLOPs per token
  runner.useGraphs = false;
  const prompt = new Sequence(-1, Array.from({ length: o.prefillLen }, (_, i) => (i * 13) % config.vocabSize), null, params);
  blocks.ensure(prompt, o.prefillLen);
  const prefillBatch = buildBatch([{ seq: prompt, numTokens: o.prefillLen, slot: -1, sample: true }], blockSize, maxBlocksPerSeq);
  const prefillMs = time(device, 3, () => {
    runner.run(prefillBatch);
    runner.sample([{ temperature: 0, topK: 0, topP: 1, minP: 0, uniform: 0 }], 0);
  });
  o.profile?.range(`prefill ${o.prefillLen}`, () => {
    runner.run(prefillBatch);
    runner.sample([{ temperature: 0, topK: 0, topP: 1, minP: 0, uniform: 0 }], 0);
  });
  blocks.release(prompt);
  const projectionParams = config.numLayers * LORA_MODULES.reduce((n, m) => n + moduleShape(config, m).reduce((a, b) => a * b, 1), 0);
  const ceilingTps = (ceilings.gemmTflops * 1e12) / (2 * projectionParams);
  const prefill = { tokens: o.prefillLen, ms: prefillMs, tokensPerSecond: o.prefillLen / (prefillMs / 1000), ceilingTokensPerSecond: ceilingTps, ratio: o.prefillLen / (prefillMs / 1000) / ceilingTps };

  const adapterLoad = measureAdapterLoad(runner, 16, adapterBytes(config, 16, QKVO, dtype));
  const graphFailure = runner.graphStats().failure;
  runner.free();

  const pick = (batch: number, mode: string) => {
    const xs = decode.filter((d) => d.batch === batch && d.adapters === mode);
    return xs.reduce((best, d) => (d.stepMs < best.stepMs ? d : best), xs[0]);
  };
  const checks: SyntheticReport["checks"] = [];
  const floorBytes = decodeStepBytes(config, dtype, { weightBytes: weights.bytes, batch: 1, contextLen: o.contextLen, adapterBytes: 0 });
  const floorMs = (floorBytes / bandwidth) * 1000;
  const b1 = pick(1, "none");
  if (b1) checks.push({ what: "decode batch 1, no adapter", target: `<= 1.25 x ${floorMs.toFixed(3)} ms (bytes a step reads / copy bandwidth)`, measured: `${b1.stepMs.toFixed(3)} ms (${(b1.stepMs / floorMs).toFixed(2)} x)`, pass: b1.stepMs <= 1.25 * floorMs });
  const none32 = pick(32, "none"), r16 = pick(32, "distinct r16 qkvo"), r64 = pick(32, "distinct r64 all7");
  if (none32 && r16) checks.push({ what: "batch 32, 32 distinct r16 q,k,v,o", target: ">= 0.85 x no-adapter tokens/s", measured: `${(r16.tokensPerSecond / none32.tokensPerSecond).toFixed(3)} x`, pass: r16.tokensPerSecond >= 0.85 * none32.tokensPerSecond });
  if (none32 && r64) checks.push({ what: "batch 32, 32 distinct r64 all seven", target: ">= 0.7 x no-adapter tokens/s", measured: `${(r64.tokensPerSecond / none32.tokensPerSecond).toFixed(3)} x`, pass: r64.tokensPerSecond >= 0.7 * none32.tokensPerSecond });
  const big64 = pick(64, "none");
  if (big64) checks.push({ what: `batch 64 at ${o.contextLen} context: bytes / step time`, target: ">= 0.7 x copy bandwidth", measured: `${big64.bandwidthRatio.toFixed(3)} x`, pass: big64.bandwidthRatio >= 0.7 });
  checks.push({ what: `prefill ${o.prefillLen} tokens`, target: ">= 0.6 x GEMM-rate tokens/s", measured: `${prefill.ratio.toFixed(3)} x`, pass: prefill.ratio >= 0.6 });
  checks.push({ what: "rank-16 q,k,v,o adapter host -> slot", target: "<= 3 ms", measured: `${adapterLoad.medianMs.toFixed(3)} ms`, pass: adapterLoad.medianMs <= 3 });
  if (distinct) checks.push(distinct);
  if (graphFailure !== null) checks.push({ what: "decode graphs recorded", target: "no failure", measured: graphFailure, pass: false });
  return {
    device: device.kind, model: typeof o.preset === "string" ? o.preset : "config.json", dtype, weightBytes: weights.bytes, floorBytes,
    ceilings, decode, prefill, adapterLoad, checks, profiledRanges: o.profile?.labels,
  };
}
