// The bytes one decode step must read from device memory: the denominator of every bandwidth
// figure and the batch-1 floor. Only what the step touches: every layer's weights and norms, the LM
// head, one embedding row per token (not the whole table), the KV cache at the step's context, and
// each distinct adapter's weights.
import { moduleShape, type LoraModule } from "../model/lora-modules.ts";
import type { ModelConfig } from "../model/config.ts";
import { NUMERIC_DTYPE_BYTES, type NumericDType } from "../native/device.ts";

export interface StepShape {
  /** Bytes of every weight tensor on the device (as randomWeights / uploadModelWeights count them). */
  weightBytes: number;
  batch: number;
  /** Tokens each sequence attends over in this step (its cached context plus the new token). */
  contextLen: number;
  /** Bytes of the distinct adapters the step's rows use. */
  adapterBytes: number;
}

export function decodeStepBytes(config: ModelConfig, dtype: NumericDType, s: StepShape): number {
  const e = NUMERIC_DTYPE_BYTES[dtype];
  // a tied table is read whole as the LM head; an untied one only at the step's token rows
  const unreadEmbedding = config.tieWordEmbeddings ? 0 : config.vocabSize * config.hiddenSize * e;
  const embeddingRows = s.batch * config.hiddenSize * e;
  const kv = s.batch * s.contextLen * kvBytesPerToken(config, dtype);
  return s.weightBytes - unreadEmbedding + embeddingRows + kv + s.adapterBytes;
}

export function kvBytesPerToken(config: ModelConfig, dtype: NumericDType): number {
  return 2 * config.numLayers * config.numKvHeads * config.headDim * NUMERIC_DTYPE_BYTES[dtype];
}

export function adapterBytes(config: ModelConfig, rank: number, modules: readonly LoraModule[], dtype: NumericDType): number {
  return config.numLayers * modules.reduce((n, m) => {
    const [out, inDim] = moduleShape(config, m);
    return n + rank * (inDim + out) * NUMERIC_DTYPE_BYTES[dtype];
  }, 0);
}

