// Server configuration: flags > OPTION_* environment > serving.properties, and every refusal names its source.
import { availableParallelism } from "node:os";
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseProperties, readServingProperties } from "../../src/config/config-sources.ts";
import { ConfigError, resolveServeOptions, type ServeOptions } from "../../src/config/serve-options.ts";
import { modelDir } from "../helpers/fixtures.ts";

const MODEL = modelDir("tiny-llama2");
const ADAPTERS = join(MODEL, "adapters");

function resolve(flags: Record<string, string | boolean | undefined> = {}, env: Record<string, string | undefined> = {}, props?: string) {
  const warnings: string[] = [];
  const options = resolveServeOptions(flags, env, props, (m) => warnings.push(m));
  return { options, warnings };
}

function error(flags: Record<string, string | boolean | undefined>, env: Record<string, string | undefined> = {}, props?: string): string {
  try {
    resolve(flags, env, props);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("resolveServeOptions", () => {
  test("defaults", () => {
    const { options, warnings } = resolve();
    expect(options).toEqual({
      models: [], host: "0.0.0.0", port: 8080, enableLora: true, maxLoras: 8, maxCpuLoras: 64, maxLoraRank: 64,
      gpuMemoryUtilization: 0.9, maxRollingBatchSize: 64, maxNumBatchedTokens: 4096, dtype: "auto", tensorParallelDegree: 1,
      device: "auto", maxQueue: 1024, maxBodyBytes: 8 * 1024 * 1024, maxPromptBytes: 0, shutdownTimeoutSeconds: 30, stubModel: false,
      tokenizerThreads: Math.max(1, Math.min(4, availableParallelism() - 1)),
      enableRuntimeLoraUpdating: false, allowedAdapterRoots: [], preloadAdapters: [], pinAdapters: [], apiKeys: [], enablePrefixCaching: true, schedulingPolicy: "fair", logFormat: "text", disableLogRequests: false, logStatsInterval: 10, adapterCacheMaxBytes: 20 * 2 ** 30,
      enableAutoToolChoice: false,
    } satisfies ServeOptions);
    expect(warnings).toEqual([]);
    expect(resolve({ adapters: ADAPTERS }).options.enableLora).toBe(true);
    expect(resolve({ model: MODEL }).options.enableLora).toBe(false);
    expect(resolve({}, { OPTION_ENABLE_LORA: "false" }).options.enableLora).toBe(false);
  });

  test("flags win over the environment, which wins over serving.properties", () => {
    const props = "option.max_loras=2\noption.max_lora_rank=16\noption.port=9000\noption.dtype=fp32\noption.model_id=" + MODEL;
    const env = { OPTION_MAX_LORAS: "3", OPTION_PORT: "9001", OPTION_DTYPE: "bf16" };
    const { options } = resolve({ "max-loras": "4" }, env, props);
    expect(options.maxLoras).toBe(4); // flag
    expect(options.port).toBe(9001); // env
    expect(options.dtype).toBe("bf16"); // env
    expect(options.maxLoraRank).toBe(16); // properties
    expect(options.models).toEqual([MODEL]); // properties
    expect(resolve({}, { SAGEMAKER_BIND_TO_PORT: "7000", OPTION_PORT: "9001" }).options.port).toBe(7000);
    expect(resolve({ port: "1234" }, { SAGEMAKER_BIND_TO_PORT: "7000" }).options.port).toBe(1234);
  });

  test("several models, comma-separated", () => {
    expect(resolve({ model: `${MODEL},${modelDir("tiny-mistral")}` }).options.models).toEqual([MODEL, modelDir("tiny-mistral")]);
  });

  test("auto tool choice needs a parser; the parser is one of hermes, llama3_json", () => {
    expect(resolve({ "enable-auto-tool-choice": true, "tool-call-parser": "hermes" }).options.toolCallParser).toBe("hermes");
    expect(error({ "enable-auto-tool-choice": true })).toMatch(/needs tool_call_parser/);
    expect(error({ "tool-call-parser": "mistral" })).toMatch(/expected one of hermes, llama3_json/);
  });

  test("dtype aliases", () => {
    const dtype = (v: string) => resolve({ dtype: v }).options.dtype;
    expect([dtype("float16"), dtype("half"), dtype("bfloat16"), dtype("BF16"), dtype("float32"), dtype("float"), dtype("auto")])
      .toEqual(["fp16", "fp16", "bf16", "bf16", "fp32", "fp32", "auto"]);
    expect(error({ dtype: "int8" })).toMatch(/^--dtype: expected one of auto, fp16, .* got "int8"/);
  });

  test("booleans", () => {
    expect(resolve({ adapters: ADAPTERS }, { OPTION_ENABLE_LORA: "true" }).options.enableLora).toBe(true);
    expect(resolve({}, {}, "option.enable_lora = TRUE").options.enableLora).toBe(true);
    expect(resolve({ "enable-lora": true }).options.enableLora).toBe(true);
    expect(error({}, { OPTION_ENABLE_LORA: "maybe" })).toBe('OPTION_ENABLE_LORA: expected true or false, got "maybe"');
    expect(error({ adapters: ADAPTERS }, { OPTION_ENABLE_LORA: "false" })).toMatch(/adapters .* are given but enable_lora is false/);
  });

  test("tensor parallel degree other than 1 is refused", () => {
    expect(resolve({}, { OPTION_TENSOR_PARALLEL_DEGREE: "1" }).options.tensorParallelDegree).toBe(1);
    expect(error({}, { OPTION_TENSOR_PARALLEL_DEGREE: "2" })).toBe('OPTION_TENSOR_PARALLEL_DEGREE: tensor parallel degree "2" is not supported: this build runs on one device');
    expect(error({}, {}, "option.tensor_parallel_degree=max")).toMatch(/^serving.properties option.tensor_parallel_degree \(line 1\): .* "max" .* one device/);
    expect(error({ "tensor-parallel-degree": "4" })).toMatch(/^--tensor-parallel-degree: .*one device/);
  });

  const invalid: [Record<string, string>, Record<string, string>, string | undefined, RegExp][] = [
    [{ port: "80a" }, {}, undefined, /^--port: expected an integer in \[0, 65535\], got "80a"/],
    [{}, { OPTION_PORT: "70000" }, undefined, /^OPTION_PORT: expected an integer in \[0, 65535\], got "70000"/],
    [{}, { SAGEMAKER_BIND_TO_PORT: "-1" }, undefined, /^SAGEMAKER_BIND_TO_PORT: .* got "-1"/],
    [{ "max-loras": "0" }, {}, undefined, /^--max-loras: expected an integer >= 1, got "0"/],
    [{}, {}, "option.max_cpu_loras=1.5", /^serving.properties option.max_cpu_loras \(line 1\): expected an integer >= 1, got "1.5"/],
    [{}, { OPTION_MAX_LORA_RANK: "" }, undefined, /^OPTION_MAX_LORA_RANK: expected an integer >= 1, got ""/],
    [{ "gpu-memory-utilization": "0" }, {}, undefined, /^--gpu-memory-utilization: expected a number in \(0, 1\], got "0"/],
    [{}, { OPTION_GPU_MEMORY_UTILIZATION: "1.2" }, undefined, /^OPTION_GPU_MEMORY_UTILIZATION: .* got "1.2"/],
    [{}, { OPTION_MAX_ROLLING_BATCH_SIZE: "many" }, undefined, /^OPTION_MAX_ROLLING_BATCH_SIZE: .* got "many"/],
    [{ "max-num-batched-tokens": "1e3" }, {}, undefined, /^--max-num-batched-tokens: .* got "1e3"/],
    [{}, {}, "option.max_model_len=0", /^serving.properties option.max_model_len \(line 1\): .* got "0"/],
    [{ device: "tpu" }, {}, undefined, /^--device: expected one of cpu, cuda, auto, got "tpu"/],
    [{}, { OPTION_MAX_QUEUE: "-5" }, undefined, /^OPTION_MAX_QUEUE: .* got "-5"/],
    [{}, {}, "job_queue_size=x", /^serving.properties job_queue_size \(line 1\): .* got "x"/],
    [{ "max-body-bytes": "big" }, {}, undefined, /^--max-body-bytes: .* got "big"/],
    [{}, { OPTION_SHUTDOWN_TIMEOUT: "soon" }, undefined, /^OPTION_SHUTDOWN_TIMEOUT: .* got "soon"/],
    [{ host: "" }, {}, undefined, /^--host: expected a value, got ""/],
    [{ model: "https://example.com/llama" }, {}, undefined, /^--model: "https:\/\/example.com\/llama" is a URL; only s3:\/\/ URLs and Hugging Face Hub ids are fetched/],
    [{}, { OPTION_MODEL_ID: "no/such/dir" }, undefined, /^OPTION_MODEL_ID: "no\/such\/dir" does not exist/],
    [{ model: join(MODEL, "config.json") }, {}, undefined, /^--model: ".*config.json" is not a model directory/],
    [{}, {}, "option.adapters=/nonexistent/adapters.tar.gz", /^serving.properties option.adapters \(line 1\): "\/nonexistent\/adapters.tar.gz" does not exist/],
    [{ adapters: join(MODEL, "config.json") }, {}, undefined, /^--adapters: ".*config.json" is not a directory or .tar.gz/],
    [{ "max-loras": "65" }, {}, undefined, /max_cpu_loras \(64\) must be at least max_loras \(65\)/],
    [{ "max-num-batched-tokens": "32" }, {}, undefined, /max_num_batched_tokens \(32\) must be at least max_rolling_batch_size \(64\)/],
  ];
  test.each(invalid)("invalid %j %j %p names its source", (flags, env, props, message) => {
    expect(error(flags, env, props)).toMatch(message);
  });
});

test("--model / OPTION_MODEL_ID take an s3:// prefix or a Hub repo id (fetched at start); a local folder of that name wins", () => {
  const models = (flags: Record<string, string>, env: Record<string, string> = {}) => resolveServeOptions(flags, env, undefined, () => {}).models;
  expect(models({ model: "s3://bucket/llama/" })).toEqual(["s3://bucket/llama/"]);
  expect(models({}, { OPTION_MODEL_ID: "meta-llama/Llama-2-7b-hf@main" })).toEqual(["meta-llama/Llama-2-7b-hf@main"]);
  expect(models({ model: MODEL })).toEqual([MODEL]);
});

describe("serving.properties", () => {
  test("comments, blank lines, whitespace, engine, unknown keys", () => {
    const text = [
      "# LMI configuration", "! also a comment", "", "engine = Python", "  option.max_loras =  3  ",
      "option.rolling_batch=vllm", "minWorkers=1", `option.model_id=${MODEL}`, "option.dtype=float16", "option.url=a=b",
    ].join("\n");
    const { options, warnings } = resolve({}, {}, text);
    expect(options.maxLoras).toBe(3);
    expect(options.dtype).toBe("fp16");
    expect(options.models).toEqual([MODEL]);
    // engine=Python and rolling_batch=vllm need nothing from this server; the others are named, in one line
    expect(warnings).toEqual(["settings this server does not honour, ignored: minWorkers=1, option.url=a=b"]);
    expect(parseProperties("a = b=c \r\n").get("a")).toEqual({ value: "b=c", line: 1 });
  });

  test("a line without = is refused with its number", () => {
    expect(error({}, {}, "option.max_loras=2\njust words")).toBe('serving.properties line 2: expected key=value, got "just words"');
  });

  test("OPTION_ variables it cannot honour are named in one line; settled values are not", () => {
    expect(resolve({}, { OPTION_ROLLING_BATCH: "lmi-dist", OPTION_TRUST_REMOTE_CODE: "false", PATH: "/bin" }).warnings).toEqual([]);
    expect(resolve({}, { OPTION_ROLLING_BATCH: "disable", OPTION_TRUST_REMOTE_CODE: "true", OPTION_ENTRYPOINT: "x.py" }).warnings).toEqual([
      "settings this server does not honour, ignored: OPTION_ROLLING_BATCH=disable, OPTION_TRUST_REMOTE_CODE=true, OPTION_ENTRYPOINT=x.py",
    ]);
  });

  test("readServingProperties reads the given file, or nothing when none exists", () => {
    const file = join(mkdtempSync(join(tmpdir(), "lora-serve-props-")), "serving.properties");
    writeFileSync(file, "option.max_loras=5\n");
    expect(readServingProperties(file)).toBe("option.max_loras=5\n");
    expect(() => readServingProperties(file + ".missing")).toThrow(/--properties: ".*missing" does not exist/);
  });
});

describe("LMI defaults", () => {
  test("an LMI-configured start takes LMI's defaults: max_loras 4, max_cpu_loras = max_loras, max_lora_rank 16", () => {
    expect(pick(resolve({}, { OPTION_PORT: "8080" }).options)).toEqual({ maxLoras: 4, maxCpuLoras: 4, maxLoraRank: 16 });
    expect(pick(resolve({}, { OPTION_MAX_LORAS: "6" }).options)).toEqual({ maxLoras: 6, maxCpuLoras: 6, maxLoraRank: 16 });
    expect(pick(resolve({}, {}, "option.max_lora_rank=32").options)).toEqual({ maxLoras: 4, maxCpuLoras: 4, maxLoraRank: 32 });
    // a command-line start keeps the flag defaults
    expect(pick(resolve({ port: "8080" }).options)).toEqual({ maxLoras: 8, maxCpuLoras: 64, maxLoraRank: 64 });
  });

  test("the seed's own environment (max_cpu_loras 4 without max_loras) starts", () => {
    const seed = {
      OPTION_MODEL_ID: MODEL, OPTION_TRUST_REMOTE_CODE: "true", OPTION_ROLLING_BATCH: "lmi-dist", OPTION_MAX_ROLLING_BATCH_SIZE: "16",
      OPTION_DTYPE: "fp16", OPTION_ENABLE_LORA: "true", OPTION_GPU_MEMORY_UTILIZATION: "0.9", OPTION_MAX_LORA_RANK: "64", OPTION_MAX_CPU_LORAS: "4",
      OPTION_TENSOR_PARALLEL_DEGREE: "1",
    };
    const { options, warnings } = resolve({}, seed);
    expect(pick(options)).toEqual({ maxLoras: 4, maxCpuLoras: 4, maxLoraRank: 64 });
    expect(warnings).toEqual(["settings this server does not honour, ignored: OPTION_TRUST_REMOTE_CODE=true"]);
  });
});

function pick(o: ServeOptions) {
  return { maxLoras: o.maxLoras, maxCpuLoras: o.maxCpuLoras, maxLoraRank: o.maxLoraRank };
}
