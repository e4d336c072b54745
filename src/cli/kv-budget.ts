// How much memory the KV cache of each model gets on a GPU: the share of free memory the options
// allow, less what the weights, the activation workspace and the LoRA slots take.
import { basename } from "node:path";
import { KvCache } from "../engine/kv-cache.ts";
import { LogitRules } from "../engine/logit-rules.ts";
import { LOGIT_ROWS } from "../engine/load-model.ts";
import { MAX_TOP_LOGPROBS } from "../engine/sampling.ts";
import { log } from "../log.ts";
import type { ServeOptions } from "../config/serve-options.ts";
import type { ModelConfig } from "../model/config.ts";
import { LORA_MODULES, moduleShape } from "../model/lora-modules.ts";
import { openCheckpoint } from "../model/safetensors.ts";
import { NUMERIC_DTYPE_BYTES, type Device, type NumericDType } from "../native/device.ts";
import { CliError } from "./args.ts";

export const BLOCK_SIZE = 16;

/**
 * GPU memory for the KV caches: `utilization` × the memory free at start-up, shared evenly by the
 * models still to load, less each model's weights, activation workspace and LoRA slots; at most
 * what max_rolling_batch_size full-length sequences need.
 */
export function gpuBudget(device: Device, utilization: number) {
  const freeAtStart = device.memInfo().free;
  const budget = Math.floor(utilization * freeAtStart);
  const gib = (n: number) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`);
  return {
    kvBytes(dir: string, config: ModelConfig, act: NumericDType, o: ServeOptions, modelsLeft: number): number {
      const used = freeAtStart - device.memInfo().free;
      const share = Math.floor((budget - used) / modelsLeft);
      const maxLen = Math.min(o.maxModelLen ?? config.maxPositions, config.maxPositions);
      const fixed = (o.synthetic !== undefined ? syntheticWeightBytes(config, act) : weightBytes(dir, act)) + workspaceBytes(config, act, o) + loraSlotBytes(config, act, o)
        + LogitRules.deviceBytes(config.vocabSize, o.maxRollingBatchSize, maxLen); // penalties' count tables included
      const kv = share - fixed;
      const oneSequence = Math.ceil(maxLen / BLOCK_SIZE) * KvCache.blockBytes(config, BLOCK_SIZE, act);
      if (kv < oneSequence) {
        throw new CliError(`${dir}: not enough GPU memory: ${gib(share)} for this model (--gpu-memory-utilization ${utilization} of ` +
          `${gib(freeAtStart)} free), ${gib(fixed)} for weights, activations, LoRA slots and sampling rules, leaving ${gib(Math.max(0, kv))} for the ` +
          `KV cache where one ${maxLen}-token sequence needs ${gib(oneSequence)}; raise --gpu-memory-utilization or lower ` +
          "--max-model-len, --max-num-batched-tokens or --max-loras");
      }
      // more than every sequence at full length could never be used
      const bytes = Math.min(kv, o.maxRollingBatchSize * oneSequence);
      log.info(`${basename(dir)}: GPU memory ${gib(fixed)} for weights, activations, LoRA slots and sampling rules, ${gib(bytes)} for the KV cache`);
      return bytes;
    },
  };
}

/** Matrices in the activation dtype (as uploadModelWeights converts them), vectors as stored. */
function weightBytes(dir: string, act: NumericDType): number {
  const checkpoint = openCheckpoint(dir);
  let bytes = 0;
  for (const name of checkpoint.names()) {
    const t = checkpoint.get(name)!;
    bytes += t.shape.length === 2 && act !== "F32" ? t.shape[0] * t.shape[1] * NUMERIC_DTYPE_BYTES[act] : t.data.byteLength;
  }
  return bytes;
}

/** What randomWeights allocates: every tensor in the activation dtype. */
function syntheticWeightBytes(c: ModelConfig, act: NumericDType): number {
  const h = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  const layer = 2 * h + h * (q + 2 * kv) + q * h + 3 * h * c.intermediateSize;
  return (c.vocabSize * h * (c.tieWordEmbeddings ? 1 : 2) + h + c.numLayers * layer) * NUMERIC_DTYPE_BYTES[act];
}

/** Mirrors the buffers src/model/workspace.ts allocates for these capacities. */
function workspaceBytes(c: ModelConfig, act: NumericDType, o: ServeOptions): number {
  const e = NUMERIC_DTYPE_BYTES[act], T = o.maxNumBatchedTokens, R = o.maxRollingBatchSize;
  const h = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, inter = c.intermediateSize;
  const activations = T * (h + Math.max(h, q) + 2 * q + 2 * kv + Math.max(h, inter) + 2 * inter) * e + T * o.maxLoraRank * 4;
  const L = Math.max(LOGIT_ROWS, R); // rows of logits (load-model.ts)
  const logits = L * (h + c.vocabSize) * e + L * (8 + 2 * MAX_TOP_LOGPROBS) * 4;
  const maxLen = Math.min(o.maxModelLen ?? c.maxPositions, c.maxPositions);
  return activations + logits + T * 12 + R * (Math.ceil(maxLen / BLOCK_SIZE) + 8) * 4;
}

/** Every device slot holding an adapter of the largest rank on all seven projections of every layer. */
function loraSlotBytes(c: ModelConfig, act: NumericDType, o: ServeOptions): number {
  const perLayer = LORA_MODULES.reduce((n, m) => n + moduleShape(c, m)[0] + moduleShape(c, m)[1], 0);
  return o.maxLoras * c.numLayers * (perLayer * o.maxLoraRank * NUMERIC_DTYPE_BYTES[act] + LORA_MODULES.length * 4 * 4);
}
