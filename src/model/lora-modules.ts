// The projections a LoRA adapter may target, by their PEFT module names, and their base shapes.
import type { ModelConfig } from "./config.ts";

export const LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

export function moduleParent(module: LoraModule): "self_attn" | "mlp" {
  return module === "gate_proj" || module === "up_proj" || module === "down_proj" ? "mlp" : "self_attn";
}

/** [out, in] of a base projection. */
export function moduleShape(config: ModelConfig, module: LoraModule): [number, number] {
  const h = config.hiddenSize, q = config.numHeads * config.headDim, kv = config.numKvHeads * config.headDim;
  const i = config.intermediateSize;
  switch (module) {
    case "q_proj": return [q, h];
    case "k_proj": case "v_proj": return [kv, h];
    case "o_proj": return [h, q];
    case "gate_proj": case "up_proj": return [i, h];
    case "down_proj": return [h, i];
  }
}
