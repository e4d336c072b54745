// OpenAI-compatible routes shared parts: model resolution, the sampling fields both generation
// routes read, /v1/models, and vLLM's runtime adapter (un)loading.
import { AdapterError } from "../adapters/peft-config.ts";
import type { EngineService } from "../engine/engine-service.ts";
import { samplingParamsOf } from "../engine/generate.ts";
import type { SamplingParams } from "../engine/sampling.ts";
import { badWordTokenIds } from "../tokenizer/bad-words.ts";
import { HttpError, badRequest } from "./errors.ts";
import { Fields } from "./fields.ts";
import { nowSeconds } from "./generation.ts";
import { adapterSourceDir, requireRuntimeUpdates } from "./adapter-policy.ts";
import type { ModelRegistry } from "./model-registry.ts";
import type { RouteContext } from "./route.ts";

export interface Resolved {
  service: EngineService;
  adapter: string | null;
  /** The `model` the client named (echoed in responses). */
  name: string;
}

/** `model` names a base model or an adapter; absent means the first base model (as vLLM's default). */
export async function resolveModel(ctx: RouteContext, f: Fields): Promise<Resolved> {
  const model = f.str("model");
  if (model === undefined) {
    const service = ctx.registry.all()[0];
    if (!service) throw new HttpError(404, "no model is being served", "model");
    return { service, adapter: null, name: service.name };
  }
  const r = ctx.registry.resolve(model) ?? (await ctx.resolver?.resolve(ctx.registry, model));
  if (!r) throw new HttpError(404, `The model \`${model}\` does not exist.`, "model");
  return { ...r, name: model };
}

/** OpenAI request fields with no effect on the answer by definition (end-user id, storage, tags). */
export const HARMLESS_FIELDS = ["user", "store", "metadata", "service_tier"];

/** Choices one request may ask for (`n`). */
export const MAX_CHOICES = 16;

export interface CommonFields {
  /** Choices per prompt: choice j samples with seed + j. */
  n: number;
  stop: string[] | undefined;
  stream: boolean;
  includeUsage: boolean;
  returnTokenIds: boolean;
  /** Everything but maxTokens / topLogprobs, which differ per route. */
  sampling: {
    temperature?: number; topP?: number; topK?: number; seed?: number; ignoreEos?: boolean; stopTokenIds?: number[];
    presencePenalty?: number; frequencyPenalty?: number; repetitionPenalty?: number; minP?: number; logitBias?: Map<number, number>;
  };
  /** vLLM's bad_words (tokenized with the model, in samplingFor). */
  badWords: string[] | undefined;
  minTokens: number;
}


export function readCommon(f: Fields): CommonFields {
  const n = f.int("n", 1) ?? 1;
  if (n > MAX_CHOICES) throw badRequest(`n must be at most ${MAX_CHOICES}, got ${n}`, "n");
  // vLLM's V1 engine dropped best_of: only its neutral value (the same as n) is accepted
  const bestOf = f.int("best_of");
  if (bestOf !== undefined && bestOf !== n) throw badRequest(`best_of is not supported (it may only equal n, ${n}), got ${bestOf}`, "best_of");
  const topK = f.int("top_k");
  f.unsupported("skip_special_tokens", (v) => v === true); // what this server always does
  const streamOptions = f.object("stream_options");
  const stop = f.strings("stop");
  const ignoreEos = f.bool("ignore_eos");
  // stop tokens and stop strings do not end a sequence before min_tokens (see SamplingParams.minTokens)
  const minTokens = f.int("min_tokens", 0) ?? 0;
  return {
    n,
    stop,
    stream: f.bool("stream") ?? false,
    includeUsage: streamOptions?.bool("include_usage") ?? false,
    returnTokenIds: f.bool("return_token_ids") ?? false,
    sampling: {
      temperature: f.num("temperature"),
      topP: f.num("top_p"),
      // vLLM's "no top-k" is -1; the engine's is 0
      topK: topK === -1 ? 0 : topK,
      seed: seedOf(f),
      ignoreEos,
      stopTokenIds: tokenIds(f, "stop_token_ids"),
      presencePenalty: f.num("presence_penalty"),
      frequencyPenalty: f.num("frequency_penalty"),
      repetitionPenalty: f.num("repetition_penalty"),
      minP: f.num("min_p"),
      logitBias: logitBiasOf(f),
    },
    badWords: f.strings("bad_words"),
    minTokens,
  };
}

// JSON numbers past 2^53 arrive rounded: the seed used would not be the seed sent
function seedOf(f: Fields): number | undefined {
  const seed = f.int("seed");
  if (seed !== undefined && !Number.isSafeInteger(seed)) throw badRequest(`seed must be an integer within ±(2^53 - 1), got ${seed}`, "seed");
  return seed;
}

/** OpenAI's logit_bias: {"token id": bias}; the ids are checked against the vocabulary with the model. */
function logitBiasOf(f: Fields): Map<number, number> | undefined {
  const o = f.object("logit_bias");
  if (!o) return undefined;
  const bias = new Map<number, number>();
  for (const key of Object.keys(o.obj)) {
    if (!/^\d+$/.test(key)) throw badRequest(`logit_bias keys must be token ids, got "${key}"`, "logit_bias");
    const v = o.raw(key);
    if (typeof v !== "number" || !Number.isFinite(v)) throw badRequest(`logit_bias["${key}"] must be a number, got ${JSON.stringify(v)}`, "logit_bias");
    bias.set(Number(key), v);
  }
  return bias;
}

/** A list of token ids (the vocabulary is checked with the model, in samplingFor). */
function tokenIds(f: Fields, name: string): number[] | undefined {
  const v = f.raw(name);
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && x >= 0)) throw badRequest(`${name} must be a list of token ids`, name);
  return v as number[];
}

export function samplingFor(service: EngineService, common: CommonFields, maxTokens: number, topLogprobs: number): SamplingParams {
  const vocab = service.model.config.vocabSize;
  const outside = common.sampling.stopTokenIds?.find((id) => id >= vocab);
  if (outside !== undefined) throw badRequest(`stop_token_ids: ${outside} is outside the vocabulary (${vocab} tokens)`, "stop_token_ids");
  // max_tokens is judged on its own first: min_tokens is not what is wrong with max_tokens -1
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw badRequest(`max_tokens must be an integer >= 1, got ${maxTokens}`, "max_tokens");
  if (common.minTokens > maxTokens) throw badRequest(`min_tokens (${common.minTokens}) must be <= max_tokens (${maxTokens})`, "min_tokens");
  const badWords = common.badWords?.length ? badWordTokenIds(service.model.tokenizer, common.badWords) : undefined;
  return { ...samplingParamsOf(service.model, { ...common.sampling, maxTokens, topLogprobs }), minTokens: common.minTokens, ...(badWords ? { badWords } : {}) };
}

/** OpenAI's usage, with prompt_tokens_details.cached_tokens: prompt tokens the prefix cache supplied. */
export function usage(promptTokens: number, completionTokens: number, cachedTokens = 0) {
  return {
    prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}

/** OpenAI's Model objects (with vLLM's root, parent and max_model_len) for every base and adapter. */
export function modelObjects(registry: ModelRegistry): Record<string, unknown>[] {
  const created = nowSeconds();
  const maxLen = new Map(registry.all().map((s) => [s.name, s.maxModelLen]));
  return registry.cards().map((c) => ({
    id: c.id, qualified_id: c.qualifiedId, object: "model", created, owned_by: "lora-serve", root: c.root, parent: c.parent,
    max_model_len: maxLen.get(c.parent ?? c.id),
  }));
}

export function listModels(ctx: RouteContext): Response {
  return Response.json({ object: "list", data: modelObjects(ctx.registry) });
}

/** `base_model` if given, else the only model. */
function baseFor(registry: ModelRegistry, f: Fields): EngineService {
  const base = f.str("base_model");
  const services = registry.all();
  if (base !== undefined) {
    const s = services.find((x) => x.name === base);
    if (!s) throw new HttpError(404, `base model "${base}" is not served (served: ${services.map((x) => x.name).join(", ")})`, "base_model");
    return s;
  }
  if (services.length !== 1) throw badRequest(`several base models are served (${services.map((x) => x.name).join(", ")}): name one in base_model`, "base_model");
  return services[0];
}

export async function loadAdapter(ctx: RouteContext): Promise<Response> {
  const f = new Fields(ctx.body);
  requireRuntimeUpdates(ctx.adapterPolicy);
  const name = f.requiredStr("lora_name");
  const source = f.requiredStr("lora_path");
  const service = baseFor(ctx.registry, f);
  const inplace = f.bool("load_inplace") ?? false;
  // `pinned` (ours): keep it in a device slot and in host memory once loaded
  const pin = f.bool("pinned") ?? false;
  f.rejectUnread();
  const path = await adapterSourceDir(ctx.adapterPolicy, source, "lora_path");
  if (ctx.registry.base(name)) throw badRequest(`"${name}" is the name of a base model`, "lora_name");
  // names are scoped by base: another base's adapter of this name is a different adapter
  // as vLLM: loading a name again is refused unless asked to replace it
  if (service.hasAdapter(name) && !inplace) {
    throw badRequest(`The lora adapter '${name}' has already been loaded (set load_inplace: true to replace it).`, "lora_name");
  }
  try {
    await service.loadAdapter(name, path, { pin });
  } catch (e) {
    if (e instanceof AdapterError) throw badRequest(e.message, /names may use/.test(e.message) ? "lora_name" : "lora_path");
    throw e;
  }
  ctx.log(`loaded adapter ${name} from ${path} on ${service.name}`);
  return new Response(`Success: LoRA adapter '${name}' added successfully.`, { headers: { "Content-Type": "text/plain; charset=utf-8" } });
}

export async function unloadAdapter(ctx: RouteContext): Promise<Response> {
  requireRuntimeUpdates(ctx.adapterPolicy);
  const f = new Fields(ctx.body);
  const name = f.requiredStr("lora_name");
  // lora_name may be BASE:ADAPTER; a bare name shared by bases needs base_model (or is refused)
  const within = f.str("base_model") !== undefined ? baseFor(ctx.registry, f) : undefined;
  const owner = ctx.registry.resolve(name, within, "lora_name");
  if (!owner || owner.adapter === null) throw new HttpError(404, `The lora adapter '${name}' cannot be found.`, "lora_name");
  // by default the adapter drains (its requests finish, new ones are refused); wait: false answers 409 at once
  const timeout = f.num("timeout");
  if (timeout !== undefined && !(timeout > 0)) throw badRequest("timeout must be a positive number of seconds", "timeout");
  const wait = f.bool("wait") ?? true;
  f.rejectUnread();
  await owner.service.unloadAdapter(owner.adapter, { wait, timeoutMs: timeout === undefined ? undefined : timeout * 1000 });
  ctx.log(`unloaded adapter ${owner.adapter} from ${owner.service.name}`);
  return new Response(`Success: LoRA adapter '${name}' removed successfully.`, { headers: { "Content-Type": "text/plain; charset=utf-8" } });
}
