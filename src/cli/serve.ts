// `lora-serve serve`: load the base models (and their adapters) and answer HTTP until SIGTERM /
// SIGINT, then finish the requests in flight and exit 0. Options: flags > OPTION_* > serving.properties.
import { defineCommand, type ArgsDef } from "citty";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { DownloadCache } from "../sources/download-cache.ts";
import { localModelDir } from "../sources/fetch-model.ts";
import { DEFAULT_DOWNLOAD_LIMITS, isRemoteSource } from "../sources/remote-source.ts";
import { extractAdaptersTarball } from "../adapters/tarball.ts";
import { readServingProperties } from "../config/config-sources.ts";
import { isTarball, OPTION_DEFS, resolveServeOptions, type ServeOptions } from "../config/serve-options.ts";
import { EngineService } from "../engine/engine-service.ts";
import type { Engine } from "../engine/engine.ts";
import { activationDtype, loadModel, loadStubModel } from "../engine/load-model.ts";
import { Metrics } from "../engine/metrics.ts";
import { log, setLogFormat } from "../log.ts";
import { readModelConfig, type ModelConfig } from "../model/config.ts";
import { syntheticConfig } from "../model/synthetic.ts";
import type { Device, NumericDType } from "../native/device.ts";
import { openDevice } from "../native/open-device.ts";
import { AdapterResolver } from "../server/adapter-resolver.ts";
import { startServer } from "../server/http.ts";
import { startStatsLogger } from "../server/stats-logger.ts";
import { sdNotify, startWatchdog } from "../server/systemd-notify.ts";
import { ModelRegistry } from "../server/model-registry.ts";
import { CliError } from "./args.ts";
import { BLOCK_SIZE, gpuBudget } from "./kv-budget.ts";
import { cacheRoot } from "../config/cache-root.ts";
import { defaultModelDir } from "./default-model.ts";


const args: ArgsDef = {
  ...Object.fromEntries(OPTION_DEFS.map((d) => [d.flag, { type: d.boolean ? "boolean" : "string", description: d.description }])),
  properties: { type: "string", description: "serving.properties file (default: ./serving.properties, else /opt/ml/model/serving.properties)" },
};

export const serveCommand = defineCommand({
  meta: { name: "serve", description: "Serve base models and LoRA adapters over HTTP (OpenAI and SageMaker LMI APIs)" },
  args,
  async run({ args: parsed, rawArgs }) {
    const flags = flagValues(parsed as Record<string, unknown>, rawArgs);
    const options = resolveServeOptions(flags, process.env, readServingProperties(parsed.properties as string | undefined));
    await serve(options);
  },
});

/**
 * The flags citty parsed, by flag name. `--model` may be repeated (citty keeps only the last
 * value, so repeats are read from the raw arguments) and each value may be a comma-separated list.
 */
function flagValues(parsed: Record<string, unknown>, rawArgs: string[]): Record<string, string | boolean | undefined> {
  const known = new Set(["_", "properties", ...OPTION_DEFS.map((d) => d.flag)]);
  for (const key of Object.keys(parsed)) {
    const kebab = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    if (!known.has(key) && !known.has(kebab)) throw new CliError(`unknown option --${key}`);
  }
  const positional = parsed._ as string[];
  if (positional.length > 0) throw new CliError(`unexpected argument ${JSON.stringify(positional[0])}`);
  const models: string[] = [];
  rawArgs.forEach((a, i) => {
    if (a === "--model" && i + 1 < rawArgs.length) models.push(rawArgs[i + 1]);
    else if (a.startsWith("--model=")) models.push(a.slice("--model=".length));
  });
  const flags = Object.fromEntries(OPTION_DEFS.map((d) => [d.flag, parsed[d.flag] as string | boolean | undefined]));
  if (models.length > 0) flags.model = models.join(",");
  return flags;
}

export async function serve(o: ServeOptions): Promise<void> {
  setLogFormat(o.logFormat);
  const embedded = o.models.length === 0;
  // a synthetic model takes its tokenizer from the embedded demo model's directory
  // downloads sit beside each other: models in <root>/models, adapters in <root>/adapters (or --adapter-cache-dir, whose parent is then the root)
  const downloads = o.adapterCacheDir !== undefined ? dirname(o.adapterCacheDir) : cacheRoot();
  const modelDirs: string[] = [];
  if (embedded) modelDirs.push(await defaultModelDir());
  for (const m of o.models) modelDirs.push(resolve(await localModelDir(m, { cacheRoot: downloads, log: (line) => log.info(line) })));
  const synthetic = o.synthetic === undefined ? undefined : o.synthetic.endsWith(".json") ? JSON.parse(readFileSync(o.synthetic, "utf8")) : o.synthetic;
  if (o.adapters !== undefined && modelDirs.length > 1) {
    throw new CliError("--adapters serves one base model; with several, put each model's adapters in <model>/adapters");
  }
  let scratch: string | undefined;
  let adapters = o.adapters;
  if (adapters !== undefined && isTarball(adapters)) {
    scratch = mkdtempSync(join(tmpdir(), "lora-serve-adapters-"));
    adapters = await extractAdaptersTarball(adapters, scratch);
  }
  // without --adapters, LMI's layout: <model>/adapters (the embedded demo model has es and fr there)
  const adaptersFor = (dir: string): string | undefined => {
    if (adapters !== undefined) return o.enableLora ? adapters : undefined;
    if (synthetic) return undefined; // the demo's adapters fit the demo model, not this shape
    const nested = join(dir, "adapters");
    if (!existsSync(nested) || !statSync(nested).isDirectory()) return undefined;
    if (o.enableLora) return nested;
    const skipped = readdirSync(nested).filter((n) => existsSync(join(nested, n, "adapter_config.json"))).length;
    if (skipped > 0) log.warn(`${skipped} adapter${skipped > 1 ? "s" : ""} in ${nested} not served: LoRA is off (--enable-lora / OPTION_ENABLE_LORA=true serves them)`);
    return undefined;
  };

  const device = await openDevice(o.device);
  const metrics = new Metrics();
  const registry = new ModelRegistry();
  const services: EngineService[] = [];
  let server: ReturnType<typeof startServer>;
  try {
    const budget = device.kind === "cuda" ? gpuBudget(device, o.gpuMemoryUtilization) : undefined;
    for (const [i, dir] of modelDirs.entries()) {
      const config = synthetic ? syntheticConfig(synthetic) : readModelConfig(dir);
      const act = activation(o, device, config);
      const model = (o.stubModel ? loadStubModel : loadModel)({
        modelDir: dir, adaptersDir: adaptersFor(dir), device, act, synthetic,
        maxSeqs: o.maxRollingBatchSize, maxTokens: o.maxNumBatchedTokens, maxLoras: o.maxLoras, maxCpuLoras: o.maxCpuLoras,
        maxLoraRank: o.maxLoraRank, maxModelLen: o.maxModelLen, blockSize: BLOCK_SIZE, prefixCaching: o.enablePrefixCaching, schedulingPolicy: o.schedulingPolicy,
        numBlocks: o.numGpuBlocksOverride,
        kvCacheBytes: o.kvCacheMemory ?? (o.stubModel || o.numGpuBlocksOverride ? undefined : budget?.kvBytes(dir, config, act, o, modelDirs.length - i)),
      });
      // a downloaded model is named as the client knows it (its repo id or URL), a local one by its folder
      const name = o.synthetic !== undefined ? basename(o.synthetic).replace(/\.json$/, "") : embedded ? "tiny-llama2"
        : isRemoteSource(o.models[i]) ? o.models[i].replace(/\/+$/, "") : basename(dir);
      const service = new EngineService(model, { name, maxQueue: o.maxQueue, maxPromptBytes: o.maxPromptBytes, tokenizerThreads: o.tokenizerThreads, logRequests: !o.disableLogRequests, metrics });
      logKvCache(name, model.engine);
      registry.add(service);
      services.push(service);
      await preloadAndPin(service, o);
      service.start();
    }
    const known = new Set(services.flatMap((s) => s.adapterNames()));
    const named = [...(o.preloadAdapters === "all" ? [] : o.preloadAdapters), ...o.pinAdapters].filter((n) => !known.has(n));
    if (named.length > 0) throw new CliError(`--preload-adapters / --pin-adapters name adapters no model serves: ${named.join(", ")}`);
    const cacheDir = o.adapterCacheDir ?? join(downloads, "adapters");
    const adapterPolicy = {
      // by default: the --adapters folder and what was downloaded
      runtimeUpdates: o.enableRuntimeLoraUpdating, allowedRoots: o.allowedAdapterRoots.length > 0 ? o.allowedAdapterRoots : [...(adapters !== undefined ? [adapters] : []), cacheDir],
      remote: o.enableRuntimeLoraUpdating || o.adapterSource !== undefined ? { cache: new DownloadCache(cacheDir, o.adapterCacheMaxBytes), limits: DEFAULT_DOWNLOAD_LIMITS } : undefined,
    };
    const resolver = o.adapterSource !== undefined ? new AdapterResolver(o.adapterSource, adapterPolicy.remote) : undefined;
    server = startServer({ registry, metrics, host: o.host, port: o.port, maxBodyBytes: o.maxBodyBytes, adapterPolicy, resolver, apiKeys: o.apiKeys, logRequests: !o.disableLogRequests, log: (m) => log.info(m),
      toolCallParser: o.enableAutoToolChoice ? o.toolCallParser : undefined });
  } catch (e) {
    for (const s of services) await s.stop();
    device.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    throw e;
  }
  const names = services.map((s) => `${s.name} (adapters: ${listed(s.adapterNames())})`);
  const forward = o.stubModel ? " (forward pass stubbed out)" : "";
  const access = o.apiKeys.length > 0 ? `${o.apiKeys.length} API key${o.apiKeys.length > 1 ? "s" : ""} required` : "no API key required";
  const lora = o.enableLora ? `; max_loras ${o.maxLoras}, max_cpu_loras ${o.maxCpuLoras}, max_lora_rank ${o.maxLoraRank}` : "; LoRA off";
  log.info(`lora-serve listening on ${server.url}; models: ${names.join("; ")}; device: ${device.kind} (${basename(device.libraryPath)})${forward}${lora}; bound to ${o.host}:${server.port}; ${access}`);

  sdNotify(`READY=1\nSTATUS=serving ${names.length} model${names.length > 1 ? "s" : ""} on ${o.host}:${server.port}`);
  const stopWatchdog = startWatchdog();
  const stopStats = startStatsLogger(services, o.logStatsInterval);

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return void log.warn(`${signal}: already shutting down`);
    stopping = true;
    shutdown(signal).catch((e) => {
      log.error(`shutdown: ${(e as Error).message}`);
      process.exitCode = 1;
    });
  };
  const shutdown = async (signal: NodeJS.Signals) => {
    log.info(`${signal}: finishing requests in flight (up to ${o.shutdownTimeoutSeconds}s)`);
    sdNotify(`STOPPING=1\nSTATUS=draining requests in flight`);
    server.stopAccepting();
    for (const s of services) s.beginShutdown();
    await Promise.all(services.map((s) => s.drain(o.shutdownTimeoutSeconds * 1000)));
    await server.stop();
    for (const s of services) await s.stop();
    device.close();
    stopWatchdog();
    stopStats();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    log.info("stopped");
    process.exitCode = 0;
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

/** --preload-adapters and --pin-adapters, for the adapters this model holds (several models: each takes its own). */
async function preloadAndPin(service: EngineService, o: ServeOptions): Promise<void> {
  const held = new Set(service.adapterNames());
  const preload = o.preloadAdapters === "all" ? [...held] : o.preloadAdapters.filter((n) => held.has(n));
  for (const name of preload) await service.model.adapters.load(name);
  for (const name of o.pinAdapters.filter((n) => held.has(n))) await service.pin(name);
  if (preload.length + o.pinAdapters.length > 0) log.info(`${service.name}: ${preload.length} adapters preloaded, pinned: ${o.pinAdapters.filter((n) => held.has(n)).join(", ") || "none"}`);
}

/** Adapter names for the start-up line: all of a few, the first ones and a count of many. */
function listed(names: string[]): string {
  if (names.length === 0) return "none";
  return names.length <= 12 ? names.join(", ") : `${names.slice(0, 10).join(", ")} and ${names.length - 10} more`;
}

function activation(o: ServeOptions, device: Device, config: ModelConfig): NumericDType {
  if (device.kind === "cpu") {
    if (o.dtype === "fp16" || o.dtype === "bf16") log.warn(`dtype ${o.dtype}: the CPU computes in fp32`);
    return "F32";
  }
  return o.dtype === "auto" ? activationDtype(device, config) : ({ fp16: "F16", bf16: "BF16", fp32: "F32" } as const)[o.dtype];
}

/** The KV cache's size and what it holds; a cache that cannot hold one full-length sequence is refused. */
function logKvCache(name: string, engine: Engine): void {
  const { numBlocks, blockSize } = engine.blocks;
  const tokens = numBlocks * blockSize, perSequence = Math.ceil(engine.maxModelLen / blockSize);
  if (numBlocks < perSequence) {
    throw new CliError(`${name}: the KV cache holds ${numBlocks} blocks of ${blockSize} tokens, fewer than one ${engine.maxModelLen}-token sequence needs ` +
      `(${perSequence}); raise --num-gpu-blocks-override / --kv-cache-memory or lower --max-model-len`);
  }
  log.info(`${name}: KV cache ${numBlocks} blocks of ${blockSize} tokens (${tokens} tokens): at most ` +
    `${(tokens / engine.maxModelLen).toFixed(2)} requests at the full ${engine.maxModelLen} tokens at once; prefix caching ${engine.blocks.caching ? "on" : "off"}`);
}
