// A model of a real shape with random weights made directly on the device (nothing to download).
import { parseModelConfig, type ModelConfig } from "./config.ts";
import type { DeviceTensor, LayerWeights, ModelWeights } from "./weights.ts";
import { PROJECTIONS, projectionLayout, type Projection } from "./projections.ts";
import type { Device, NumericDType } from "../native/device.ts";
import { NUMERIC_DTYPE_BYTES } from "../native/device.ts";

const LLAMA = { architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_act: "silu", rms_norm_eps: 1e-5 };

export const PRESETS: Record<string, Record<string, unknown>> = {
  "llama-2-7b": { ...LLAMA, vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, max_position_embeddings: 4096, rope_theta: 10000 },
  "llama-3-8b": { ...LLAMA, vocab_size: 128256, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, max_position_embeddings: 8192, rope_theta: 500000 },
  "mistral-7b": { architectures: ["MistralForCausalLM"], model_type: "mistral", hidden_act: "silu", rms_norm_eps: 1e-5, vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, max_position_embeddings: 32768, rope_theta: 10000, sliding_window: 4096 },
  // small enough for the CPU twin and the CUDA emulator: exercises the benchmark's code in CI (head_dim 64,
  // which the CUDA attention kernels take)
  tiny: { ...LLAMA, vocab_size: 512, hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 4096 },
};

export function syntheticConfig(preset: string | Record<string, unknown>): ModelConfig {
  const json = typeof preset === "string" ? PRESETS[preset] : preset;
  if (!json) throw new Error(`unknown preset "${preset}" (known: ${Object.keys(PRESETS).join(", ")}, or a config.json path)`);
  return parseModelConfig(json, typeof preset === "string" ? preset : "config.json");
}

export function randomWeights(device: Device, config: ModelConfig, dtype: NumericDType, seed = 1): ModelWeights {
  let bytes = 0, next = seed;
  const tensor = (shape: number[], scale: number): DeviceTensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    const ptr = device.alloc(n * NUMERIC_DTYPE_BYTES[dtype]);
    device.fillRandom({ dtype, ptr, n, seed: next++, scale });
    bytes += n * NUMERIC_DTYPE_BYTES[dtype];
    return { ptr, dtype, shape };
  };
  const h = config.hiddenSize;
  const embed = tensor([config.vocabSize, h], 1);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    // norms near 1 and projections scaled by fan-in keep activations in range through the layers
    const layer = { inputNorm: tensor([h], 1), postNorm: tensor([h], 1) } as LayerWeights;
    for (const p of Object.keys(PROJECTIONS) as Projection[]) {
      const { out, in: inDim } = projectionLayout(config, p);
      layer[p] = tensor([out, inDim], 1 / Math.sqrt(inDim));
    }
    layers.push(layer);
  }
  const norm = tensor([h], 1);
  const lmHead = config.tieWordEmbeddings ? embed : tensor([config.vocabSize, h], 1 / Math.sqrt(h));
  return { embed, layers, norm, lmHead, bytes };
}
