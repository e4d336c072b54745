// PEFT adapter_config.json for LoRA: parsed strictly, with PEFT's own matching rules for
// target_modules, layers_to_transform, rank_pattern and alpha_pattern.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { unsafeRegexReason } from "./safe-regex.ts";

export class AdapterError extends Error {
  override name = "AdapterError";
  constructor(readonly adapter: string, message: string) {
    super(`adapter "${adapter}": ${message}`);
  }
}

export interface PeftLoraConfig {
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  /** A list of module-name suffixes, or one regex that must match the whole module path. */
  targetModules: string[] | string;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  layersToTransform: number[] | null;
  useDora: boolean;
  baseModel?: string;
}

type Json = Record<string, unknown>;

export function readPeftConfig(dir: string, adapter: string): PeftLoraConfig {
  const path = join(dir, "adapter_config.json");
  if (!existsSync(path)) throw new AdapterError(adapter, `${path} does not exist`);
  let c: Json;
  try {
    c = JSON.parse(readFileSync(path, "utf8"));
    if (typeof c !== "object" || c === null || Array.isArray(c)) throw new Error("not a JSON object");
  } catch (e) {
    throw new AdapterError(adapter, `${path}: ${(e as Error).message}`);
  }
  return parsePeftConfig(c, adapter);
}

export function parsePeftConfig(c: Json, adapter: string): PeftLoraConfig {
  const fail = (msg: string): never => {
    throw new AdapterError(adapter, msg);
  };
  if ((c.peft_type ?? "LORA") !== "LORA") fail(`peft_type ${JSON.stringify(c.peft_type)} is not supported (LORA only)`);
  if ((c.bias ?? "none") !== "none") fail(`bias "${c.bias}" is not supported (only "none": LoRA bias terms would change the base)`);
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length > 0) {
    fail(`modules_to_save ${JSON.stringify(c.modules_to_save)} is not supported (it replaces whole base modules)`);
  }
  if (c.lora_bias === true) fail("lora_bias is not supported");
  if (Array.isArray(c.target_parameters) && c.target_parameters.length > 0) fail("target_parameters is not supported");
  const r = c.r;
  if (!Number.isInteger(r) || (r as number) <= 0) fail(`r must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = c.lora_alpha ?? r;
  if (!isPositiveFinite(alpha)) fail(`lora_alpha must be a positive finite number, got ${String(alpha)}`);
  const targets = c.target_modules;
  const targetModules = typeof targets === "string" ? targets
    : Array.isArray(targets) && targets.every((t) => typeof t === "string") ? (targets as string[])
    : fail(`target_modules must be a list of names or a regex string, got ${JSON.stringify(targets)}`);
  if (typeof targetModules === "string") safePattern(targetModules, "target_modules", fail);
  const layers = c.layers_to_transform;
  const layersToTransform = layers === undefined || layers === null ? null
    : Number.isInteger(layers) ? [layers as number]
    : Array.isArray(layers) && layers.every((l) => Number.isInteger(l)) ? (layers as number[])
    : fail(`layers_to_transform must be an int or a list of ints, got ${JSON.stringify(layers)}`);
  return {
    r: r as number,
    loraAlpha: alpha as number,
    useRslora: c.use_rslora === true,
    targetModules,
    rankPattern: patternMap(c.rank_pattern, "rank_pattern", (v) => Number.isInteger(v) && (v as number) > 0, "a positive integer", fail),
    alphaPattern: patternMap(c.alpha_pattern, "alpha_pattern", isPositiveFinite, "a positive finite number", fail),
    layersToTransform,
    useDora: c.use_dora === true,
    baseModel: typeof c.base_model_name_or_path === "string" ? c.base_model_name_or_path : undefined,
  };
}

/** PEFT's check_target_module_exists for a module path such as "model.layers.0.self_attn.q_proj". */
export function isTargeted(config: PeftLoraConfig, modulePath: string, layer: number): boolean {
  const t = config.targetModules;
  const named = typeof t === "string" ? new RegExp(`^(?:${t})$`).test(modulePath)
    : t.some((name) => modulePath === name || modulePath.endsWith(`.${name}`));
  return named && (config.layersToTransform === null || config.layersToTransform.includes(layer));
}

/** Rank, alpha and scale of one module: rank_pattern / alpha_pattern keys match a path suffix. */
export function moduleScaling(config: PeftLoraConfig, modulePath: string): { rank: number; alpha: number; scale: number } {
  const rank = lookupPattern(config.rankPattern, modulePath) ?? config.r;
  const alpha = lookupPattern(config.alphaPattern, modulePath) ?? config.loraAlpha;
  return { rank, alpha, scale: config.useRslora ? alpha / Math.sqrt(rank) : alpha / rank };
}

function lookupPattern(patterns: Record<string, number>, modulePath: string): number | undefined {
  for (const [key, value] of Object.entries(patterns)) {
    if (key === modulePath || new RegExp(`^(?:.*\\.)?(?:${key})$`).test(modulePath)) return value;
  }
  return undefined;
}

const isPositiveFinite = (v: unknown): boolean => typeof v === "number" && Number.isFinite(v) && v > 0;

// JSON's 1e400 parses to Infinity: a scale that would turn the adapter's outputs into NaN
function patternMap(v: unknown, key: string, valid: (x: unknown) => boolean, what: string, fail: (msg: string) => never): Record<string, number> {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) fail(`${key} must map module patterns to numbers`);
  for (const [pattern, value] of Object.entries(v as Record<string, unknown>)) {
    if (!valid(value)) fail(`${key}["${pattern}"] must be ${what}, got ${String(value)}`);
    safePattern(pattern, `${key} key "${pattern}"`, fail);
  }
  return v as Record<string, number>;
}

function safePattern(pattern: string, field: string, fail: (msg: string) => never): void {
  const why = unsafeRegexReason(pattern);
  if (why) fail(`${field} is refused: ${why}`);
}
