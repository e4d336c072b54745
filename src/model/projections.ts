// The base model's projections as the forward pass runs them: q|k|v and gate|up each fused into one
// matrix (one GEMM, one LoRA shrink and one expand), o and down alone.
import { moduleShape, type LoraModule } from "./lora-modules.ts";
import type { ModelConfig } from "./config.ts";

export const PROJECTIONS = {
  qkv: ["q_proj", "k_proj", "v_proj"],
  o: ["o_proj"],
  gateUp: ["gate_proj", "up_proj"],
  down: ["down_proj"],
} as const satisfies Record<string, readonly LoraModule[]>;

export type Projection = keyof typeof PROJECTIONS;

export interface ProjectionPart {
  module: LoraModule;
  /** the module's first row of the fused matrix (its first column of the output) */
  offset: number;
  rows: number;
}

/** Each module's rows of the fused matrix, and its [out, in] shape. */
export function projectionLayout(config: ModelConfig, p: Projection): { parts: ProjectionPart[]; out: number; in: number } {
  const parts: ProjectionPart[] = [];
  let out = 0;
  for (const module of PROJECTIONS[p]) {
    const [rows] = moduleShape(config, module);
    parts.push({ module, offset: out, rows });
    out += rows;
  }
  return { parts, out, in: moduleShape(config, PROJECTIONS[p][0])[1] };
}
