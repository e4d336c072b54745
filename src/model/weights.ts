// The base model's weights: checked against the config, copied from the mapped checkpoint to the device.
import type { Device, DevPtr, NumericDType } from "../native/device.ts";
import { LORA_MODULES, moduleParent, moduleShape, type LoraModule } from "../adapters/lora-adapter.ts";
import type { ModelConfig } from "./config.ts";
import type { Checkpoint } from "./safetensors.ts";
import { encodeFloats } from "./convert.ts";
import { WeightsFormatError, tensorToFloat32, type TensorView } from "./tensor.ts";

export interface DeviceTensor {
  ptr: DevPtr;
  dtype: NumericDType;
  shape: number[];
}

export type LayerWeights = Record<LoraModule | "inputNorm" | "postNorm", DeviceTensor>;

export interface ModelWeights {
  embed: DeviceTensor;
  layers: LayerWeights[];
  norm: DeviceTensor;
  lmHead: DeviceTensor;
  /** Device bytes they take. */
  bytes: number;
}

const NUMERIC: readonly string[] = ["F32", "F16", "BF16"];

export function baseTensor(checkpoint: Checkpoint, name: string, shape: number[]): TensorView {
  const t = checkpoint.get(name);
  if (!t) throw new WeightsFormatError(`the checkpoint has no tensor "${name}"`);
  if (!NUMERIC.includes(t.dtype)) throw new WeightsFormatError(`tensor "${name}" has dtype ${t.dtype}; F32, F16 or BF16 expected`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new WeightsFormatError(`tensor "${name}" has shape [${t.shape}], the config implies [${shape}]`);
  }
  return t;
}

export function projectionName(layer: number, module: LoraModule): string {
  return `model.layers.${layer}.${moduleParent(module)}.${module}.weight`;
}

/**
 * Copies the weights to the device. With `matrixDtype`, matrices stored in another dtype are
 * converted to it (GPU GEMMs need weights and activations of one type); norms stay as stored.
 */
export function uploadModelWeights(checkpoint: Checkpoint, config: ModelConfig, device: Device, matrixDtype?: NumericDType): ModelWeights {
  let bytes = 0;
  const upload = (name: string, shape: number[]): DeviceTensor => {
    const t = baseTensor(checkpoint, name, shape);
    const convert = matrixDtype !== undefined && shape.length === 2 && t.dtype !== matrixDtype;
    const data = convert ? encodeFloats(tensorToFloat32(t), matrixDtype) : t.data;
    const ptr = device.alloc(data.byteLength);
    device.upload(ptr, data);
    bytes += data.byteLength;
    return { ptr, dtype: convert ? matrixDtype : (t.dtype as NumericDType), shape };
  };
  const h = config.hiddenSize;
  const embed = upload("model.embed_tokens.weight", [config.vocabSize, h]);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const layer = {
      inputNorm: upload(`model.layers.${l}.input_layernorm.weight`, [h]),
      postNorm: upload(`model.layers.${l}.post_attention_layernorm.weight`, [h]),
    } as LayerWeights;
    for (const m of LORA_MODULES) layer[m] = upload(projectionName(l, m), moduleShape(config, m));
    layers.push(layer);
  }
  const norm = upload("model.norm.weight", [h]);
  const tied = config.tieWordEmbeddings || !checkpoint.get("lm_head.weight");
  const lmHead = tied ? embed : upload("lm_head.weight", [config.vocabSize, h]);
  return { embed, layers, norm, lmHead, bytes };
}
