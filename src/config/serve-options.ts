// The server's configuration from three sources, as SageMaker LMI reads it: command-line flags
// win over `OPTION_*` environment variables, which win over `option.*` lines of serving.properties.
// One table defines every option; each source's name is derived from (or overrides) its snake name.
import { existsSync, statSync } from "node:fs";
import { lookup, parseProperties, type Properties, type Raw } from "./config-sources.ts";
import { isLmiConfigured, LMI_DEFAULTS, notHonoured } from "./lmi-settings.ts";
import { availableParallelism } from "node:os";
import type { SchedulingPolicy } from "../engine/fair-share.ts";
import type { ToolParserName } from "../server/tool-parsers.ts";
import { log, type LogFormat } from "../log.ts";
import { isRemoteSource } from "../sources/remote-source.ts";

export type DType = "auto" | "fp16" | "bf16" | "fp32";
export type DeviceOption = "cpu" | "cuda" | "auto";

export interface ServeOptions {
  /** Local base-model directories (empty: the embedded demo model). */
  models: string[];
  /** Adapter directory (one subdirectory per adapter) or a .tar.gz of one. */
  adapters?: string;
  host: string;
  port: number;
  enableLora: boolean;
  maxLoras: number;
  maxCpuLoras: number;
  maxLoraRank: number;
  gpuMemoryUtilization: number;
  maxRollingBatchSize: number;
  maxNumBatchedTokens: number;
  maxModelLen?: number;
  dtype: DType;
  tensorParallelDegree: number;
  device: DeviceOption;
  maxQueue: number;
  maxBodyBytes: number;
  /** Largest prompt text in bytes, refused before tokenizing (0: the context length times the longest token). */
  maxPromptBytes: number;
  /** Threads that tokenize long prompts off the event loop (0: all on the event loop). */
  tokenizerThreads: number;
  shutdownTimeoutSeconds: number;
  /** A model shape with random weights instead of --model (benchmarks on a GPU; nothing to download). */
  synthetic?: string;
  /** The forward pass replaced by a stub (instant, fixed tokens): measures the host path alone. */
  stubModel: boolean;
  /** Clients may load and unload adapters at run time (vLLM's VLLM_ALLOW_RUNTIME_LORA_UPDATING). */
  enableRuntimeLoraUpdating: boolean;
  /** Directories runtime-loaded adapters must lie under (default: the --adapters directory). */
  allowedAdapterRoots: string[];
  enableAutoToolChoice: boolean;
  toolCallParser?: ToolParserName;
  /** Load on first request: unknown adapter names are fetched from `<source>/<name>` (a folder or s3:// prefix). */
  adapterSource?: string;
  /** Where s3:// adapters download to, and the most it may hold. */
  adapterCacheDir?: string;
  adapterCacheMaxBytes: number;
  /** Adapters read into host memory at start ("all", or names). */
  preloadAdapters: string[] | "all";
  /** Adapters kept in host memory and, once there, in a device slot (at most max_loras - 1). */
  pinAdapters: string[];
  /** Bearer keys clients must send (empty: no key needed). */
  apiKeys: string[];
  /** Reuse the KV of shared prompt prefixes (per adapter). */
  enablePrefixCaching: boolean;
  /** fair: a full batch makes room for a waiting adapter's request; fcfs: requests wait their turn. */
  schedulingPolicy: SchedulingPolicy;
  /** KV blocks per model, whatever memory says. */
  numGpuBlocksOverride?: number;
  /** Bytes of KV cache per model (instead of what gpu_memory_utilization leaves). */
  kvCacheMemory?: number;
  logFormat: LogFormat;
  /** No line per request (vLLM's --disable-log-requests). */
  disableLogRequests: boolean;
  /** Seconds between stats lines while busy (0: none). */
  logStatsInterval: number;
}

/** One core stays with the event loop and the step loop. */
function defaultTokenizerThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

type Parse<T> = (raw: Raw, source: string) => T;

export interface OptionDef {
  key: keyof ServeOptions;
  /** Command-line flag without the dashes, as citty names it. */
  flag: string;
  /** Environment variables, the first one set wins. */
  env: string[];
  /** serving.properties keys. */
  property: string[];
  parse: Parse<unknown>;
  /** Used when no source sets the option; a function sees the options resolved so far. */
  default?: unknown | ((o: Partial<ServeOptions>) => unknown);
  description: string;
  /** Takes no value on the command line. */
  boolean?: boolean;
}

// ---- value parsers; `source` names where the value came from ----

const fail = (source: string, expected: string, raw: Raw): never => {
  throw new ConfigError(`${source}: expected ${expected}, got ${JSON.stringify(raw)}`);
};

const str = (raw: Raw, source: string): string => {
  if (typeof raw !== "string" || raw.trim() === "") fail(source, "a value", raw);
  return (raw as string).trim();
};

const int = (min: number, max = Number.MAX_SAFE_INTEGER): Parse<number> => (raw, source) => {
  const n = typeof raw === "string" && /^\s*[+-]?\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    fail(source, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`, raw);
  }
  return n;
};

const bool: Parse<boolean> = (raw, source) => {
  if (typeof raw === "boolean") return raw;
  const v = raw.trim().toLowerCase();
  if (["true", "1", "yes", "on"].includes(v)) return true;
  if (["false", "0", "no", "off"].includes(v)) return false;
  return fail(source, "true or false", raw);
};

const oneOf = <T extends string>(aliases: Record<string, T>): Parse<T> => (raw, source) => {
  const v = typeof raw === "string" ? aliases[raw.trim().toLowerCase()] : undefined;
  return v ?? fail(source, `one of ${Object.keys(aliases).join(", ")}`, raw);
};

const fraction: Parse<number> = (raw, source) => {
  const n = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN;
  if (!(n > 0 && n <= 1)) fail(source, "a number in (0, 1]", raw);
  return n;
};

const localPath = (what: string, isTarball: (p: string) => boolean) => (raw: Raw, source: string): string => {
  const p = str(raw, source);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(p)) {
    const fetched = what === "model directory" ? "only s3:// URLs and Hugging Face Hub ids are fetched" : "give a local one";
    throw new ConfigError(`${source}: ${JSON.stringify(p)} is a URL; ${fetched} (a ${what})`);
  }
  if (!existsSync(p)) throw new ConfigError(`${source}: ${JSON.stringify(p)} does not exist`);
  if (!statSync(p).isDirectory() && !isTarball(p)) throw new ConfigError(`${source}: ${JSON.stringify(p)} is not a ${what}`);
  return p;
};

export const isTarball = (p: string): boolean => /\.(tar\.gz|tgz)$/i.test(p);

// a local folder wins; otherwise a Hub repo id or an s3:// prefix is downloaded at start
const modelList: Parse<string[]> = (raw, source) =>
  str(raw, source).split(",").map((s) => s.trim()).filter(Boolean)
    .map((p) => (!existsSync(p) && isRemoteSource(p) ? p : localPath("model directory", () => false)(p, source)));

const pathList: Parse<string[]> = (raw, source) => str(raw, source).split(",").map((s) => s.trim()).filter(Boolean);

const singleDevice: Parse<number> = (raw, source) => {
  const n = typeof raw === "string" ? raw.trim() : raw;
  if (n !== "1") throw new ConfigError(`${source}: tensor parallel degree ${JSON.stringify(raw)} is not supported: this build runs on one device`);
  return 1;
};

const UNITS: Record<string, number> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
/** Bytes: a number with an optional binary unit (4096, 512MiB, 8G). */
const byteSize: Parse<number> = (raw, source) => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(String(raw));
  if (!m || Number(m[1]) <= 0) throw new ConfigError(`${source}: expected a size in bytes such as 4096, 512MiB or 8GiB, got ${JSON.stringify(raw)}`);
  return Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]);
};

const DTYPES: Record<string, DType> = {
  auto: "auto", fp16: "fp16", float16: "fp16", half: "fp16", bf16: "bf16", bfloat16: "bf16", fp32: "fp32", float32: "fp32", float: "fp32",
};

// ---- the table ----

/** An option whose flag, variable and property derive from one snake_case name. */
function opt(name: string, key: keyof ServeOptions, parse: Parse<unknown>, def: unknown, description: string, extra: Partial<OptionDef> = {}): OptionDef {
  return {
    key, flag: name.replace(/_/g, "-"), env: [`OPTION_${name.toUpperCase()}`], property: [`option.${name}`],
    parse, default: def, description, ...extra,
  };
}

export const OPTION_DEFS: OptionDef[] = [
  opt("model_id", "models", modelList, [], "Base model directory (repeat, or comma-separate, for several)",
    { flag: "model" }),
  opt("adapters", "adapters", localPath("directory or .tar.gz", isTarball), undefined,
    "Adapters: a directory with one subdirectory per adapter, or a .tar.gz of one"),
  opt("host", "host", str, "0.0.0.0", "Address to listen on (default 0.0.0.0)"),
  opt("port", "port", int(0, 65535), 8080, "Port to listen on (default 8080)",
    { env: ["SAGEMAKER_BIND_TO_PORT", "OPTION_PORT"] }),
  opt("enable_lora", "enableLora", bool, (o: Partial<ServeOptions>) => o.adapters !== undefined || o.models!.length === 0,
    "Serve LoRA adapters (default: when adapters are given, or for the embedded demo model)", { boolean: true }),
  opt("max_loras", "maxLoras", int(1), 8, "Adapters resident on the device at once (default 8; 4 under an LMI configuration)"),
  opt("max_cpu_loras", "maxCpuLoras", int(1), 64, "Adapters kept in host memory (default 64; max_loras under an LMI configuration)"),
  opt("max_lora_rank", "maxLoraRank", int(1), 64, "Largest adapter rank accepted (default 64; 16 under an LMI configuration)"),
  opt("gpu_memory_utilization", "gpuMemoryUtilization", fraction, 0.9, "Share of free GPU memory to use (default 0.9)"),
  opt("max_rolling_batch_size", "maxRollingBatchSize", int(1), 64, "Sequences in one step (default 64)"),
  opt("max_num_batched_tokens", "maxNumBatchedTokens", int(1), 4096, "Tokens in one step (default 4096)"),
  opt("max_model_len", "maxModelLen", int(1), undefined, "Context length (default: the model's)"),
  opt("dtype", "dtype", oneOf(DTYPES), "auto", "auto | fp16 | bf16 | fp32 (also float16, bfloat16, float32)"),
  opt("tensor_parallel_degree", "tensorParallelDegree", singleDevice, 1, "Must be 1: this build runs on one device"),
  opt("device", "device", oneOf<DeviceOption>({ cpu: "cpu", cuda: "cuda", auto: "auto" }), "auto", "cpu | cuda | auto (default auto)"),
  opt("max_queue", "maxQueue", int(0), 1024, "Requests waiting beyond this are refused with 503 (default 1024)",
    { property: ["option.max_queue", "job_queue_size"] }),
  opt("max_body_bytes", "maxBodyBytes", int(1), 8 * 1024 * 1024, "Largest request body (default 8 MiB)"),
  opt("max_prompt_bytes", "maxPromptBytes", int(0), 0,
    "Largest prompt text in bytes, refused before tokenizing (default 0: the context length times the longest token's bytes)"),
  opt("tokenizer_threads", "tokenizerThreads", int(0, 64), defaultTokenizerThreads(),
    "Threads per model that tokenize long prompts off the event loop (default: CPU cores - 1, at most 4; 0: none)"),
  opt("shutdown_timeout", "shutdownTimeoutSeconds", int(0), 30, "Seconds to finish in-flight requests on SIGTERM (default 30)"),
  opt("synthetic", "synthetic", str, undefined,
    "Serve a model shape with random weights instead of --model: llama-2-7b, mistral-7b or a config.json (the demo's tokenizer)"),
  opt("stub_model", "stubModel", bool, false, "Stub out the forward pass (instant, fixed tokens) to measure the host path", { boolean: true }),
  opt("enable_runtime_lora_updating", "enableRuntimeLoraUpdating", bool, false,
    "Let clients load and unload adapters at run time (default off)",
    { boolean: true, env: ["OPTION_ENABLE_RUNTIME_LORA_UPDATING", "VLLM_ALLOW_RUNTIME_LORA_UPDATING"] }),
  opt("adapter_source", "adapterSource", str, undefined,
    "Load on first request: a request naming an unknown adapter fetches <source>/<name> (a folder or s3://bucket/prefix)"),
  opt("adapter_cache_dir", "adapterCacheDir", str, undefined,
    "Where s3:// adapters download to (default: adapters/ in the cache folder: $CACHE_DIRECTORY, $XDG_CACHE_HOME/lora-serve, ~/.cache/lora-serve or $TMPDIR, the first writable)"),
  opt("adapter_cache_max_bytes", "adapterCacheMaxBytes", int(1), 20 * 2 ** 30, "Size cap of the adapter download cache (default 20 GiB)"),
  opt("preload_adapters", "preloadAdapters", (raw, source) => (str(raw, source) === "all" ? "all" : pathList(raw, source)), [],
    "Adapters to read into host memory at start: all, or comma-separated names"),
  opt("pin_adapters", "pinAdapters", pathList, [], "Comma-separated adapters to pin (host memory and a device slot; at most max_loras - 1)"),
  opt("api_key", "apiKeys", pathList, [], "Comma-separated keys clients must send as Authorization: Bearer (default: none; /ping, /health, /metrics stay open)",
    { env: ["OPTION_API_KEY", "VLLM_API_KEY"] }),
  opt("enable_prefix_caching", "enablePrefixCaching", bool, true,
    "Reuse the K/V of prompt prefixes already computed for the same adapter (default on; --no-enable-prefix-caching turns it off)", { boolean: true }),
  opt("scheduling_policy", "schedulingPolicy", oneOf<SchedulingPolicy>({ fair: "fair", fcfs: "fcfs" }), "fair",
    "fair (default): when the batch is full, the adapter running the most sequences yields its youngest to a waiting adapter's request; fcfs: requests wait for running ones to finish"),
  opt("num_gpu_blocks_override", "numGpuBlocksOverride", int(1), undefined, "KV cache blocks (of 16 tokens) per model, whatever memory says (CPU and CUDA)"),
  opt("kv_cache_memory", "kvCacheMemory", byteSize, undefined, "KV cache size per model, e.g. 8GiB (default: what --gpu-memory-utilization leaves on a GPU; on the CPU what the batch needs, at most 2 GiB)"),
  opt("log_format", "logFormat", oneOf<LogFormat>({ text: "text", json: "json" }), "text", "text | json: one JSON object a line, for log shippers (default text)"),
  opt("disable_log_requests", "disableLogRequests", bool, false, "No log line per request (by default one as each ends: id, adapter, tokens, TTFT, total, status)", { boolean: true }),
  opt("log_stats_interval", "logStatsInterval", int(0), 10, "Seconds between stats lines while busy (default 10; 0: none)"),
  opt("enable_auto_tool_choice", "enableAutoToolChoice", bool, false, "Let tool_choice \"auto\" through (needs --tool-call-parser)", { boolean: true }),
  opt("tool_call_parser", "toolCallParser", oneOf<ToolParserName>({ hermes: "hermes", llama3_json: "llama3_json" }), undefined,
    "The model family's tool-call format for tool_choice auto: hermes (Hermes, Qwen 2.5+) | llama3_json (Llama 3.1+)"),
  opt("allowed_adapter_roots", "allowedAdapterRoots", pathList, [],
    "Comma-separated directories runtime-loaded adapters must lie under (default: the --adapters directory and the download cache)"),
];

export function resolveServeOptions(
  flags: Record<string, string | boolean | undefined>,
  env: Record<string, string | undefined>,
  propertiesText?: string,
  warn: (msg: string) => void = (m) => log.warn(m),
): ServeOptions {
  const props: Properties = propertiesText === undefined ? new Map() : parseProperties(propertiesText);
  const ignored = notHonoured(OPTION_DEFS, env, props);
  if (ignored.length > 0) warn(`settings this server does not honour, ignored: ${ignored.join(", ")}`);
  const lmi = isLmiConfigured(OPTION_DEFS, env, props);
  const out: Partial<ServeOptions> = {};
  for (const def of OPTION_DEFS) {
    const found = lookup(def, flags, env, props);
    const fallback = lmi && def.key in LMI_DEFAULTS ? LMI_DEFAULTS[def.key] : def.default;
    const value = found ? def.parse(found.raw, found.source) : typeof fallback === "function" ? fallback(out) : fallback;
    if (value !== undefined) (out as Record<string, unknown>)[def.key] = value;
  }
  const o = out as ServeOptions;
  if (o.adapters !== undefined && !o.enableLora) throw new ConfigError(`adapters ${JSON.stringify(o.adapters)} are given but enable_lora is false`);
  if (o.synthetic !== undefined && o.models.length > 0) throw new ConfigError("synthetic replaces model_id: give one or the other");
  if (o.enableAutoToolChoice && !o.toolCallParser) throw new ConfigError("enable_auto_tool_choice needs tool_call_parser (hermes or llama3_json)");
  if (o.maxCpuLoras < o.maxLoras) throw new ConfigError(`max_cpu_loras (${o.maxCpuLoras}) must be at least max_loras (${o.maxLoras})`);
  if (o.maxNumBatchedTokens < o.maxRollingBatchSize) {
    throw new ConfigError(`max_num_batched_tokens (${o.maxNumBatchedTokens}) must be at least max_rolling_batch_size (${o.maxRollingBatchSize})`);
  }
  return o;
}
