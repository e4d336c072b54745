// PEFT adapters with random weights written to disk for a base model's shape, so a benchmark
// exercises the real disk -> host -> slot path. Ranks and target modules cycle through mixes.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LORA_MODULES, moduleParent, moduleShape, type LoraModule } from "../../model/lora-modules.ts";
import type { ModelConfig } from "../../model/config.ts";
import { encodeSafetensors, type TensorToWrite } from "../../model/safetensors-writer.ts";

export const MODULE_SETS: Record<string, readonly LoraModule[]> = {
  qkvo: ["q_proj", "k_proj", "v_proj", "o_proj"],
  qv: ["q_proj", "v_proj"],
  all: LORA_MODULES,
};

export interface SyntheticAdapterSpec {
  config: ModelConfig;
  count: number;
  /** Adapter i has rank ranks[i % ranks.length] and targets MODULE_SETS[moduleSets[i % moduleSets.length]]. */
  ranks: number[];
  moduleSets: string[];
  seed?: number;
  /** Weights are uniform in ±amplitude (default 0.02: outputs near the base model's, as trained adapters' are). */
  amplitude?: number;
}

export function syntheticAdapterName(i: number): string {
  return `bench-${String(i).padStart(4, "0")}`;
}

/** Writes `count` adapters as `<dir>/<name>/` and returns their names; adapter i's popularity rank is i. */
export function writeSyntheticAdapters(dir: string, spec: SyntheticAdapterSpec): string[] {
  for (const set of spec.moduleSets) if (!MODULE_SETS[set]) throw new Error(`unknown module set "${set}" (known: ${Object.keys(MODULE_SETS).join(", ")})`);
  if (spec.ranks.length === 0 || spec.ranks.some((r) => !Number.isInteger(r) || r < 1)) throw new Error("ranks must be positive integers");
  const names: string[] = [];
  for (let i = 0; i < spec.count; i++) {
    const name = syntheticAdapterName(i);
    const rank = spec.ranks[i % spec.ranks.length];
    const modules = MODULE_SETS[spec.moduleSets[i % spec.moduleSets.length]];
    const out = join(dir, name);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "adapter_config.json"), JSON.stringify(peftConfig(rank, modules), null, 2));
    writeFileSync(join(out, "adapter_model.safetensors"), encodeSafetensors(randomTensors(spec.config, rank, modules, (spec.seed ?? 1) * 100003 + i, spec.amplitude ?? 0.02)));
    names.push(name);
  }
  return names;
}

function peftConfig(rank: number, modules: readonly LoraModule[]) {
  return {
    peft_type: "LORA", task_type: "CAUSAL_LM", r: rank, lora_alpha: 2 * rank, lora_dropout: 0, bias: "none",
    target_modules: [...modules], use_rslora: false, use_dora: false, base_model_name_or_path: "lora-serve-bench",
  };
}

function randomTensors(config: ModelConfig, rank: number, modules: readonly LoraModule[], seed: number, amplitude: number): Record<string, TensorToWrite> {
  let s = seed >>> 0 || 1;
  // fp16, as most published adapters: half the disk and load bytes of fp32 (a 7B r16 q,k,v,o adapter is 34 MB)
  const fill = (n: number) => {
    const a = new Float16Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13, s ^= s >>> 17, s ^= s << 5;
      a[i] = ((s >>> 0) / 2 ** 32 - 0.5) * 2 * amplitude;
    }
    return new Uint16Array(a.buffer);
  };
  const tensors: Record<string, TensorToWrite> = {};
  for (let layer = 0; layer < config.numLayers; layer++) {
    for (const module of modules) {
      const [out, inDim] = moduleShape(config, module);
      const prefix = `base_model.model.model.layers.${layer}.${moduleParent(module)}.${module}`;
      tensors[`${prefix}.lora_A.weight`] = { dtype: "F16", shape: [rank, inDim], data: fill(rank * inDim) };
      tensors[`${prefix}.lora_B.weight`] = { dtype: "F16", shape: [out, rank], data: fill(out * rank) };
    }
  }
  return tensors;
}
