// A PEFT LoRA adapter loaded into host memory (fp32) and checked against its base model.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ModelConfig } from "../model/config.ts";
import { LORA_MODULES, moduleParent, moduleShape, type LoraModule } from "../model/lora-modules.ts";
import { openSafetensors } from "../model/safetensors.ts";
import { tensorToFloat32, type TensorView } from "../model/tensor.ts";
import { readTorchBin } from "../model/torch-bin.ts";
import { AdapterError, isTargeted, moduleScaling, readPeftConfig, type PeftLoraConfig } from "./peft-config.ts";
import { doraMagnitudeScale } from "./dora.ts";

export interface LoraModuleWeights {
  layer: number;
  module: LoraModule;
  rank: number;
  scale: number;
  /** [rank, in] */
  a: Float32Array;
  /** [out, rank] */
  b: Float32Array;
  /** DoRA: magnitude / ||W + scale·B·A|| per output row, [out]. */
  doraScale?: Float32Array;
}

export interface LoraAdapter {
  name: string;
  dir: string;
  config: PeftLoraConfig;
  modules: LoraModuleWeights[];
  maxRank: number;
  /** Host bytes held by the weights. */
  bytes: number;
}

export interface BaseModelView {
  config: ModelConfig;
  /** The base projection weight (for DoRA's row norms). */
  weight(layer: number, module: LoraModule): TensorView;
}

const KEY = /^base_model\.model\.(.+)\.(lora_A|lora_B|lora_magnitude_vector)(?:\.weight)?$/;
const MODULE_PATH = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)$/;

export function loadLoraAdapter(dir: string, name: string, base: BaseModelView, opts: { maxLoraRank: number }): LoraAdapter {
  const steps = loadSteps(dir, name, base, opts);
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
  }
}

/** The same load, yielding to the event loop between modules so a server keeps answering meanwhile. */
export async function loadLoraAdapterAsync(dir: string, name: string, base: BaseModelView, opts: { maxLoraRank: number }): Promise<LoraAdapter> {
  const steps = loadSteps(dir, name, base, opts);
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Every check the load makes (config, tensor names, shapes against the base, ranks), without converting weights. */
export function validateLoraAdapter(dir: string, name: string, base: BaseModelView, opts: { maxLoraRank: number }): void {
  planModules(dir, name, base, opts);
}

interface PlannedModule {
  path: string;
  layer: number;
  module: LoraModule;
  rank: number;
  scale: number;
  a: TensorView;
  b: TensorView;
  mag?: TensorView;
}

// The adapter's modules, each checked against the base; weights still in their file's dtype.
function planModules(dir: string, name: string, base: BaseModelView, opts: { maxLoraRank: number }): { config: PeftLoraConfig; modules: PlannedModule[] } {
  const config = readPeftConfig(dir, name);
  const tensors = readAdapterTensors(dir, name);
  const found = new Map<string, { layer: number; module: LoraModule; parts: Partial<Record<string, TensorView>> }>();
  for (const [key, tensor] of tensors) {
    const m = KEY.exec(key);
    if (!m) throw new AdapterError(name, `unexpected tensor "${key}" (only LoRA A/B weights and DoRA magnitudes are supported)`);
    const [, path, part] = m;
    const pm = MODULE_PATH.exec(path);
    const module = pm?.[3] as LoraModule | undefined;
    if (!pm || !LORA_MODULES.includes(module!) || moduleParent(module!) !== pm[2]) {
      throw new AdapterError(name, `LoRA on "${path}" is not supported (only the attention and MLP projections)`);
    }
    const layer = Number(pm[1]);
    if (layer >= base.config.numLayers) throw new AdapterError(name, `"${path}": the base model has ${base.config.numLayers} layers`);
    const entry = found.get(path) ?? { layer, module: module!, parts: {} };
    entry.parts[part] = tensor;
    found.set(path, entry);
  }
  checkCoverage(config, name, base.config, found);
  const modules: PlannedModule[] = [];
  for (const [path, { layer, module, parts }] of found) {
    const a = parts.lora_A, b = parts.lora_B, mag = parts.lora_magnitude_vector;
    if (!a || !b) throw new AdapterError(name, `"${path}" has ${a ? "no lora_B" : "no lora_A"}`);
    const { rank, scale } = moduleScaling(config, path);
    const [out, inDim] = moduleShape(base.config, module);
    // a rank that disagrees with the config is the adapter's own inconsistency, not a base mismatch
    if (a.shape.length === 2 && b.shape.length === 2 && a.shape[0] === b.shape[1] && a.shape[0] !== rank) {
      throw new AdapterError(name, `"${path}" has rank ${a.shape[0]} in its weights but ${rank} in adapter_config.json (r / rank_pattern)`);
    }
    expectShape(name, path, "lora_A", a, [rank, inDim]);
    expectShape(name, path, "lora_B", b, [out, rank]);
    if (rank > opts.maxLoraRank) throw new AdapterError(name, `"${path}" has rank ${rank}, above max_lora_rank ${opts.maxLoraRank}`);
    if (config.useDora !== (mag !== undefined)) {
      throw new AdapterError(name, `"${path}": use_dora is ${config.useDora} but the DoRA magnitude is ${mag ? "present" : "missing"}`);
    }
    if (mag) expectShape(name, path, "lora_magnitude_vector", mag, [out]);
    modules.push({ path, layer, module, rank, scale, a, b, mag });
  }
  if (modules.length === 0) throw new AdapterError(name, "has no LoRA weights");
  return { config, modules };
}

// The load as a sequence of steps, one module's conversion each.
function* loadSteps(dir: string, name: string, base: BaseModelView, opts: { maxLoraRank: number }): Generator<void, LoraAdapter> {
  const { config, modules: planned } = planModules(dir, name, base, opts);
  const modules: LoraModuleWeights[] = [];
  let maxRank = 0, bytes = 0;
  for (const { layer, module, rank, scale, a, b, mag } of planned) {
    const weights: LoraModuleWeights = { layer, module, rank, scale, a: tensorToFloat32(a), b: tensorToFloat32(b) };
    if (mag) weights.doraScale = doraMagnitudeScale(tensorToFloat32(mag), base.weight(layer, module), weights);
    modules.push(weights);
    yield;
    maxRank = Math.max(maxRank, rank);
    bytes += (weights.a.byteLength + weights.b.byteLength + (weights.doraScale?.byteLength ?? 0));
  }
  return { name, dir, config, modules, maxRank, bytes };
}

function readAdapterTensors(dir: string, name: string): Map<string, TensorView> {
  const st = join(dir, "adapter_model.safetensors"), bin = join(dir, "adapter_model.bin");
  try {
    // copied, not mapped: an adapter replaced or truncated on disk mid-load must not SIGBUS the server
    if (existsSync(st)) return openSafetensors(st, { copy: true }).tensors;
    if (existsSync(bin)) return readTorchBin(bin, { copy: true });
  } catch (e) {
    throw new AdapterError(name, (e as Error).message);
  }
  throw new AdapterError(name, `${dir} holds neither adapter_model.safetensors nor adapter_model.bin`);
}

// Every module the config targets must have weights, and every weight must be targeted.
function checkCoverage(config: PeftLoraConfig, name: string, base: ModelConfig, found: Map<string, unknown>): void {
  for (const path of found.keys()) {
    const layer = Number(MODULE_PATH.exec(path)![1]);
    if (!isTargeted(config, path, layer)) {
      const by = config.layersToTransform === null ? "target_modules does not name" : "target_modules / layers_to_transform do not select";
      throw new AdapterError(name, `weights for "${path}", which ${by}`);
    }
  }
  for (let layer = 0; layer < base.numLayers; layer++) {
    for (const module of LORA_MODULES) {
      const path = `model.layers.${layer}.${moduleParent(module)}.${module}`;
      if (isTargeted(config, path, layer) && !found.has(path)) throw new AdapterError(name, `target_modules names "${path}" but it has no weights`);
    }
  }
  const targets = config.targetModules;
  if (Array.isArray(targets)) {
    for (const t of targets) {
      if (!LORA_MODULES.some((m) => m === t || t.endsWith(`.${m}`))) {
        throw new AdapterError(name, `target module "${t}" does not exist in a ${base.modelType} model (or is not supported)`);
      }
    }
  }
}

function expectShape(name: string, path: string, part: string, t: TensorView, shape: number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new AdapterError(name, `${path}.${part} has shape [${t.shape}], the base model needs [${shape}] — is it an adapter for another base model?`);
  }
}
