// DoRA (weight-decomposed LoRA): y = m / ||W + s·B·A||_row ⊙ (x·Wᵀ + s·x·Aᵀ·Bᵀ). The per-row
// factor depends only on the weights, so it is computed once, at load, in float64.
import { tensorToFloat32, type TensorView } from "../model/tensor.ts";

export function doraMagnitudeScale(
  magnitude: Float32Array,
  baseWeight: TensorView,
  lora: { rank: number; scale: number; a: Float32Array; b: Float32Array },
): Float32Array {
  const [out, inDim] = baseWeight.shape;
  const w = tensorToFloat32(baseWeight);
  const { rank, scale, a, b } = lora;
  const row = new Float64Array(inDim);
  const result = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inDim; i++) row[i] = w[o * inDim + i];
    for (let j = 0; j < rank; j++) {
      const bj = scale * b[o * rank + j];
      for (let i = 0; i < inDim; i++) row[i] += bj * a[j * inDim + i];
    }
    let norm = 0;
    for (let i = 0; i < inDim; i++) norm += row[i] * row[i];
    result[o] = magnitude[o] / Math.sqrt(norm);
  }
  return result;
}
