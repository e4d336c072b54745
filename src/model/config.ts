// HF config.json (+ generation_config.json) of the Llama family, checked and normalised.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export type RopeScaling =
  | { type: "default" }
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export interface ModelConfig {
  modelType: "llama" | "mistral";
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  maxPositions: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Keys a query may see, itself included; 0 = unlimited. */
  slidingWindow: number;
  tieWordEmbeddings: boolean;
  bosTokenId?: number;
  eosTokenIds: number[];
  torchDtype?: string;
}

export interface GenerationDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
  doSample?: boolean;
  eosTokenIds?: number[];
}

export class ModelConfigError extends Error {
  override name = "ModelConfigError";
}

const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "MistralForCausalLM"];

type Json = Record<string, unknown>;

export function readModelConfig(dir: string): ModelConfig {
  return parseModelConfig(readJson(join(dir, "config.json")), join(dir, "config.json"));
}

export function readGenerationDefaults(dir: string): GenerationDefaults {
  const path = join(dir, "generation_config.json");
  if (!existsSync(path)) return {};
  const g = readJson(path);
  return {
    temperature: optionalNumber(g, "temperature", path),
    topP: optionalNumber(g, "top_p", path),
    topK: optionalNumber(g, "top_k", path),
    doSample: typeof g.do_sample === "boolean" ? g.do_sample : undefined,
    eosTokenIds: g.eos_token_id === undefined || g.eos_token_id === null ? undefined : idList(g.eos_token_id, "eos_token_id", path),
  };
}

export function parseModelConfig(c: Json, where = "config.json"): ModelConfig {
  const archs = Array.isArray(c.architectures) ? (c.architectures as unknown[]) : [];
  const modelType = c.model_type;
  if ((modelType !== "llama" && modelType !== "mistral") || (archs.length > 0 && !archs.some((a) => SUPPORTED_ARCHITECTURES.includes(String(a))))) {
    throw new ModelConfigError(
      `${where}: unsupported architecture ${JSON.stringify(archs.length ? archs : modelType)} ` +
        `(supported: ${SUPPORTED_ARCHITECTURES.join(", ")})`,
    );
  }
  if ((c.hidden_act ?? "silu") !== "silu") throw new ModelConfigError(`${where}: hidden_act ${c.hidden_act} is not supported (silu only)`);
  if (c.attention_bias === true || c.mlp_bias === true) throw new ModelConfigError(`${where}: attention_bias / mlp_bias are not supported`);
  const hiddenSize = requiredInt(c, "hidden_size", where);
  const numHeads = requiredInt(c, "num_attention_heads", where);
  const numKvHeads = optionalInt(c, "num_key_value_heads", where) ?? numHeads;
  if (numHeads % numKvHeads !== 0) throw new ModelConfigError(`${where}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const headDim = optionalInt(c, "head_dim", where) ?? hiddenSize / numHeads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new ModelConfigError(`${where}: head_dim ${headDim} must be an even integer`);
  const { theta, scaling } = parseRope(c, where);
  const window = c.sliding_window;
  const useWindow = c.use_sliding_window !== false && typeof window === "number" && window > 0;
  return {
    modelType,
    vocabSize: requiredInt(c, "vocab_size", where),
    hiddenSize,
    intermediateSize: requiredInt(c, "intermediate_size", where),
    numLayers: requiredInt(c, "num_hidden_layers", where),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: optionalNumber(c, "rms_norm_eps", where) ?? 1e-6,
    maxPositions: optionalInt(c, "max_position_embeddings", where) ?? 4096,
    ropeTheta: theta,
    ropeScaling: scaling,
    slidingWindow: useWindow ? (window as number) : 0,
    tieWordEmbeddings: c.tie_word_embeddings === true,
    bosTokenId: typeof c.bos_token_id === "number" ? c.bos_token_id : undefined,
    eosTokenIds: c.eos_token_id === undefined || c.eos_token_id === null ? [] : idList(c.eos_token_id, "eos_token_id", where),
    torchDtype: typeof (c.torch_dtype ?? c.dtype) === "string" ? String(c.torch_dtype ?? c.dtype) : undefined,
  };
}

// Both the classic `rope_theta` + `rope_scaling` and the newer `rope_parameters` form.
function parseRope(c: Json, where: string): { theta: number; scaling: RopeScaling } {
  const params = (c.rope_parameters ?? c.rope_scaling ?? null) as Json | null;
  const theta = (params && typeof params.rope_theta === "number" ? params.rope_theta : undefined) ??
    optionalNumber(c, "rope_theta", where) ?? 10000;
  if (!params) return { theta, scaling: { type: "default" } };
  const type = String(params.rope_type ?? params.type ?? "default");
  const field = `${c.rope_parameters ? "rope_parameters" : "rope_scaling"}`;
  switch (type) {
    case "default":
      return { theta, scaling: { type: "default" } };
    case "linear":
      return { theta, scaling: { type: "linear", factor: requiredNumber(params, "factor", `${where} ${field}`) } };
    case "llama3":
      return {
        theta,
        scaling: {
          type: "llama3",
          factor: requiredNumber(params, "factor", `${where} ${field}`),
          lowFreqFactor: requiredNumber(params, "low_freq_factor", `${where} ${field}`),
          highFreqFactor: requiredNumber(params, "high_freq_factor", `${where} ${field}`),
          originalMaxPositions: requiredNumber(params, "original_max_position_embeddings", `${where} ${field}`),
        },
      };
    default:
      throw new ModelConfigError(`${where}: ${field}.rope_type "${type}" is not supported (default, linear, llama3)`);
  }
}

function readJson(path: string): Json {
  if (!existsSync(path)) throw new ModelConfigError(`${path} does not exist`);
  try {
    const value = JSON.parse(readFileSync(path, "utf8"));
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not a JSON object");
    return value as Json;
  } catch (e) {
    throw new ModelConfigError(`${path}: ${(e as Error).message}`);
  }
}

function idList(v: unknown, key: string, where: string): number[] {
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x) && (x as number) >= 0)) throw new ModelConfigError(`${where}: ${key} must be a token id or a list of them`);
  return list as number[];
}

function optionalNumber(c: Json, key: string, where: string): number | undefined {
  const v = c[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new ModelConfigError(`${where}: ${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function requiredNumber(c: Json, key: string, where: string): number {
  const v = optionalNumber(c, key, where);
  if (v === undefined) throw new ModelConfigError(`${where}: ${key} is missing`);
  return v;
}

function optionalInt(c: Json, key: string, where: string): number | undefined {
  const v = optionalNumber(c, key, where);
  if (v !== undefined && (!Number.isInteger(v) || v <= 0)) throw new ModelConfigError(`${where}: ${key} must be a positive integer, got ${v}`);
  return v;
}

function requiredInt(c: Json, key: string, where: string): number {
  const v = optionalInt(c, key, where);
  if (v === undefined) throw new ModelConfigError(`${where}: ${key} is missing`);
  return v;
}
