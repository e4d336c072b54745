// RoPE inverse frequencies as HF computes them (fp32), for every supported rope_type.
import type { ModelConfig } from "./config.ts";

export function ropeInverseFrequencies(config: ModelConfig): Float32Array {
  const dim = config.headDim;
  const base = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) base[i] = Math.fround(1 / Math.pow(config.ropeTheta, Math.fround((2 * i) / dim)));
  const s = config.ropeScaling;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const f = base[i];
    if (s.type === "default") out[i] = f;
    else if (s.type === "linear") out[i] = f / s.factor;
    else out[i] = llama3Frequency(f, s);
  }
  return out;
}

// Llama 3.1: long wavelengths slowed by `factor`, short ones kept, a smooth blend between.
function llama3Frequency(f: number, s: Extract<ModelConfig["ropeScaling"], { type: "llama3" }>): number {
  const lowFreqWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositions / s.highFreqFactor;
  const wavelen = (2 * Math.PI) / f;
  if (wavelen > lowFreqWavelen) return f / s.factor;
  if (wavelen < highFreqWavelen) return f;
  const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
  return (1 - smooth) * (f / s.factor) + smooth * f;
}
