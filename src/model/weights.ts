// The base model's weights: checked against the config, copied from the mapped checkpoint to the device.
import type { Device, DevPtr, NumericDType } from "../native/device.ts";
import { moduleParent, type LoraModule } from "./lora-modules.ts";
import type { ModelConfig } from "./config.ts";
import type { Checkpoint } from "./safetensors.ts";
import { encodeFloats } from "./convert.ts";
import { PROJECTIONS, projectionLayout, type Projection } from "./projections.ts";
import { WeightsFormatError, tensorToFloat32, type TensorView } from "./tensor.ts";

export interface DeviceTensor {
  ptr: DevPtr;
  dtype: NumericDType;
  shape: number[];
}

/** A layer's norms and its projections, q|k|v and gate|up fused (rows stacked in that order). */
export type LayerWeights = Record<Projection | "inputNorm" | "postNorm", DeviceTensor>;

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
  // One matrix for the projection's modules, rows stacked; parts stored in different dtypes meet in F32.
  const fused = (l: number, p: Projection): DeviceTensor => {
    const layout = projectionLayout(config, p);
    const views = layout.parts.map((part) => baseTensor(checkpoint, projectionName(l, part.module), [part.rows, layout.in]));
    const dtype = matrixDtype ?? (views.every((v) => v.dtype === views[0].dtype) ? (views[0].dtype as NumericDType) : "F32");
    const datas = views.map((v) => (v.dtype === dtype ? v.data : encodeFloats(tensorToFloat32(v), dtype)));
    const total = datas.reduce((n, d) => n + d.byteLength, 0);
    const ptr = device.alloc(total);
    let at = 0;
    for (const d of datas) {
      device.upload(ptr + at, d);
      at += d.byteLength;
    }
    bytes += total;
    return { ptr, dtype, shape: [layout.out, layout.in] };
  };
  const h = config.hiddenSize;
  const embed = upload("model.embed_tokens.weight", [config.vocabSize, h]);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const layer = {
      inputNorm: upload(`model.layers.${l}.input_layernorm.weight`, [h]),
      postNorm: upload(`model.layers.${l}.post_attention_layernorm.weight`, [h]),
    } as LayerWeights;
    for (const p of Object.keys(PROJECTIONS) as Projection[]) layer[p] = fused(l, p);
    layers.push(layer);
  }
  const norm = upload("model.norm.weight", [h]);
  const tied = config.tieWordEmbeddings || !checkpoint.get("lm_head.weight");
  const lmHead = tied ? embed : upload("lm_head.weight", [config.vocabSize, h]);
  return { embed, layers, norm, lmHead, bytes };
}
