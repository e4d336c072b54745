// Loads one base model (config, weights, tokenizer, chat template, adapters) onto a device and
// wires it to an engine.
import { resolve } from "node:path";
import { AdapterStore } from "../adapters/adapter-store.ts";
import { log } from "../log.ts";
import { projectionName } from "../model/weights.ts";
import { readGenerationDefaults, readModelConfig, type GenerationDefaults, type ModelConfig } from "../model/config.ts";
import { openCheckpoint, type Checkpoint } from "../model/safetensors.ts";
import { randomWeights, syntheticConfig } from "../model/synthetic.ts";
import type { Device, NumericDType } from "../native/device.ts";
import { ChatTemplate } from "../tokenizer/chat.ts";
import { TextTokenizer, type JsonObject } from "../tokenizer/tokenizer.ts";
import { GrammarService } from "../grammar/grammar-service.ts";
import { grammarVocab } from "../grammar/grammar-vocab.ts";
import { KvCache } from "./kv-cache.ts";
import { Engine } from "./engine.ts";
import { ModelRunner, type RunnerOptions } from "./model-runner.ts";
import { StubRunner } from "./stub-runner.ts";
import type { SchedulingPolicy } from "./fair-share.ts";
import type { StepRunner } from "./engine.ts";
import { MAX_TOP_LOGPROBS } from "./sampling.ts";

export interface LoadOptions {
  modelDir: string;
  adaptersDir?: string;
  device: Device;
  /** Adapters resident on the device at once. */
  maxLoras?: number;
  /** Adapters kept in host memory (beyond them, the least recently used idle one is dropped). */
  maxCpuLoras?: number;
  maxLoraRank?: number;
  /** Sequences in one step. */
  maxSeqs?: number;
  /** Tokens in one step. */
  maxTokens?: number;
  /** Rows of logits one step can compute (defaults to maxSeqs; tests that read every position raise it). */
  maxLogitRows?: number;
  blockSize?: number;
  /** Bytes for the KV cache (defaults to what maxSeqs full-length sequences need, at most 2 GiB). */
  kvCacheBytes?: number;
  /** KV blocks, whatever the bytes say (vLLM's num_gpu_blocks_override). */
  numBlocks?: number;
  maxModelLen?: number;
  /** Reuse the K/V of full blocks whose tokens (and adapter) another sequence computed (default true). */
  prefixCaching?: boolean;
  /** fair (default) or fcfs: see fair-share.ts. */
  schedulingPolicy?: SchedulingPolicy;
  /** Record decode steps as graphs and replay them (CUDA only; default true). */
  graphs?: boolean;
  /** Activation dtype (default: F32 on the CPU, the checkpoint's fp16/bf16 on a GPU). */
  act?: NumericDType;
  /** A model shape (preset name or config.json object) with random weights; `modelDir` then gives only the tokenizer. */
  synthetic?: string | Record<string, unknown>;
}

/** Rows of logits one step can compute: one per sequence, or every position of a prompt being scored. */
export const LOGIT_ROWS = 512;

/** fp32 on the CPU twin; on a GPU the checkpoint's half type (fp32 checkpoints run in bf16). */
export function activationDtype(device: Device, config: ModelConfig): NumericDType {
  if (device.kind === "cpu") return "F32";
  return config.torchDtype === "float16" ? "F16" : "BF16";
}

export interface LoadedModel<R extends StepRunner = StepRunner> {
  dir: string;
  config: ModelConfig;
  generation: GenerationDefaults;
  tokenizer: TextTokenizer;
  chat: ChatTemplate;
  adapters: AdapterStore;
  runner: R;
  engine: Engine;
  /** Structured output: compiles constraints and makes each step's masks (its thread starts on first use). */
  grammar: GrammarService;
}

/** The model on its device: real weights from `modelDir`, or random ones of `synthetic`'s shape. */
export function loadModel(opts: LoadOptions): LoadedModel<ModelRunner> {
  return assemble(opts, (config, checkpoint, runnerOpts) => checkpoint
    ? ModelRunner.fromCheckpoint(opts.device, config, checkpoint, runnerOpts)
    : new ModelRunner(opts.device, config, randomWeights(opts.device, config, runnerOpts.act), runnerOpts));
}

/** The same model with its forward pass stubbed out (instant, fixed tokens): the host path alone. */
export function loadStubModel(opts: LoadOptions): LoadedModel<StubRunner> {
  // nineteen distinct tokens under the Llama-2 tokenizer: each names its successor in the text
  const text = "The quick brown fox jumps over a lazy dog, then sleeps on the mat.";
  return assemble(opts, (config, _, runnerOpts, tokenizer) => new StubRunner(config, runnerOpts, tokenizer.encode(text, { addSpecialTokens: false })));
}

type MakeRunner<R> = (config: ModelConfig, checkpoint: Checkpoint | null, opts: RunnerOptions, tokenizer: TextTokenizer) => R;

function assemble<R extends StepRunner>(opts: LoadOptions, makeRunner: MakeRunner<R>): LoadedModel<R> {
  const dir = resolve(opts.modelDir);
  const config = opts.synthetic ? syntheticConfig(opts.synthetic) : readModelConfig(dir);
  const checkpoint = opts.synthetic ? null : openCheckpoint(dir);
  const tokenizer = TextTokenizer.fromModelDir(dir);
  if (opts.synthetic && tokenizer.vocabSize > config.vocabSize) {
    throw new Error(`synthetic model: its vocabulary (${config.vocabSize}) is smaller than the tokenizer's (${tokenizer.vocabSize}) in ${dir}`);
  }
  const chat = ChatTemplate.fromModelDir(dir);
  const maxModelLen = Math.min(opts.maxModelLen ?? config.maxPositions, config.maxPositions);
  const maxSeqs = opts.maxSeqs ?? 32;
  const blockSize = opts.blockSize ?? 16;
  const maxBlocksPerSeq = Math.ceil(maxModelLen / blockSize);
  const act = opts.act ?? activationDtype(opts.device, config);
  const blockBytes = KvCache.blockBytes(config, blockSize, act);
  const kvBytes = opts.kvCacheBytes ?? Math.min(2 ** 31, maxSeqs * maxBlocksPerSeq * blockBytes);
  const numBlocks = opts.numBlocks ?? Math.max(1, Math.floor(kvBytes / blockBytes));
  const maxLoraRank = opts.maxLoraRank ?? 64;
  const runner = makeRunner(config, checkpoint, {
    act,
    caps: {
      maxTokens: opts.maxTokens ?? Math.max(2048, maxModelLen),
      maxSeqs,
      maxLogitRows: Math.max(opts.maxLogitRows ?? LOGIT_ROWS, maxSeqs),
      maxBlocksPerSeq,
      maxLoraRank,
      maxTopLogprobs: MAX_TOP_LOGPROBS,
      maxContextLen: maxModelLen,
    },
    numBlocks,
    blockSize,
    graphs: opts.graphs,
    maxLoras: opts.maxLoras ?? 8,
  }, tokenizer);
  const adapters = new AdapterStore({
    config,
    weight: (layer, module) => {
      if (!checkpoint) throw new Error("a synthetic model has no host copy of its weights (DoRA adapters need one)");
      return checkpoint.get(projectionName(layer, module))!;
    },
  }, maxLoraRank, opts.maxCpuLoras ?? Infinity);
  // a broken adapter is named with its reason and left out; the others serve
  if (opts.adaptersDir) adapters.addDirectory(opts.adaptersDir, (_, e) => log.warn(`${e.message}; it is not served`));
  const grammar = new GrammarService(grammarVocab(tokenizer.definition.tokenizerJson as JsonObject, config.vocabSize), maxSeqs);
  const engine = new Engine(runner, adapters, maxModelLen, { prefixCaching: opts.prefixCaching, policy: opts.schedulingPolicy, grammar });
  return { dir, config, generation: readGenerationDefaults(dir), tokenizer, chat, adapters, runner, engine, grammar };
}
