// `lora-serve generate`: run prompts through a model (and adapters) once, as one batch.
import { defineCommand } from "citty";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../engine/load-model.ts";
import { generate, type GenerateRequest } from "../engine/generate.ts";
import { openDevice, type DeviceChoice } from "../native/open-device.ts";
import type { ChatMessage } from "../tokenizer/chat.ts";
import { defaultModelDir } from "./default-model.ts";
import { CliError, intArg, numberArg } from "./args.ts";

export const generateCommand = defineCommand({
  meta: { name: "generate", description: "Generate from a model (and LoRA adapters) once, all requests in one batch" },
  args: {
    model: { type: "string", description: "HF model directory (default: the embedded tiny-llama2 demo)" },
    adapters: { type: "string", description: "Directory of PEFT adapters, one subdirectory each" },
    adapter: { type: "string", description: "Adapter to use (default: the base model)" },
    prompt: { type: "string", description: "Prompt text" },
    "prompt-ids": { type: "string", description: "Prompt as comma-separated token ids" },
    chat: { type: "string", description: "JSON file with a list of chat messages (or {messages: [...]})" },
    requests: { type: "string", description: "JSONL file of requests, run together as one batch" },
    "max-tokens": { type: "string", description: "Tokens to generate (default 64)" },
    temperature: { type: "string", description: "0 = greedy (default: generation_config.json)" },
    "top-p": { type: "string" },
    "top-k": { type: "string" },
    seed: { type: "string", description: "Makes sampling reproducible" },
    "top-logprobs": { type: "string", description: "Alternatives to report per token (0-20)" },
    "ignore-eos": { type: "boolean", description: "Keep generating after EOS" },
    device: { type: "enum", options: ["cpu", "cuda", "auto"], default: "cpu" },
    "max-lora-rank": { type: "string", description: "Largest adapter rank accepted (default 64)" },
    "max-loras": { type: "string", description: "Adapters resident on the device at once (default 8)" },
    json: { type: "boolean", description: "Print one JSON line per request" },
  },
  async run({ args }) {
    const modelDir = args.model ?? (await defaultModelDir());
    const adaptersDir = args.adapters ?? (args.model ? undefined : join(modelDir, "adapters"));
    const requests = args.requests ? readRequestsFile(args.requests) : [singleRequest(args as Args)];
    const device = await openDevice(args.device as DeviceChoice);
    try {
      const model = loadModel({
        modelDir, adaptersDir, device,
        maxLoraRank: intArg(args["max-lora-rank"], "--max-lora-rank"),
        maxLoras: intArg(args["max-loras"], "--max-loras"),
        maxSeqs: Math.max(32, requests.length),
      });
      const stream = !args.json && requests.length === 1;
      const results = generate(model, requests, stream ? (_, piece) => process.stdout.write(piece) : undefined);
      if (stream) process.stdout.write("\n");
      else if (args.json) for (const r of results) console.log(JSON.stringify(r));
      else for (const r of results) console.log(`[${r.adapter ?? "base"}] ${r.text}`);
    } finally {
      device.close();
    }
  },
});

type Args = Record<string, unknown>;

function singleRequest(args: Args): GenerateRequest {
  const ids = args["prompt-ids"] as string | undefined;
  return {
    adapter: (args.adapter as string | undefined) ?? null,
    prompt: args.prompt as string | undefined,
    promptIds: ids === undefined ? undefined : ids.split(",").map((s, i) => {
      const id = Number(s.trim());
      if (!Number.isInteger(id)) throw new CliError(`--prompt-ids: item ${i} (${JSON.stringify(s)}) is not an integer`);
      return id;
    }),
    messages: args.chat === undefined ? undefined : readChatFile(args.chat as string),
    maxTokens: intArg(args["max-tokens"] as string, "--max-tokens"),
    temperature: numberArg(args.temperature as string, "--temperature"),
    topP: numberArg(args["top-p"] as string, "--top-p"),
    topK: intArg(args["top-k"] as string, "--top-k"),
    seed: intArg(args.seed as string, "--seed"),
    topLogprobs: intArg(args["top-logprobs"] as string, "--top-logprobs"),
    ignoreEos: args["ignore-eos"] === true ? true : undefined,
  };
}

function readChatFile(path: string): ChatMessage[] {
  const value = parseJson(readFileSync(path, "utf8"), path);
  const messages = Array.isArray(value) ? value : (value as { messages?: unknown })?.messages;
  if (!Array.isArray(messages)) throw new CliError(`${path}: expected a list of messages or {"messages": [...]}`);
  return messages as ChatMessage[];
}

const REQUEST_FIELDS: Record<string, keyof GenerateRequest> = {
  adapter: "adapter", prompt: "prompt", prompt_ids: "promptIds", messages: "messages", max_tokens: "maxTokens",
  temperature: "temperature", top_p: "topP", top_k: "topK", seed: "seed", top_logprobs: "topLogprobs", ignore_eos: "ignoreEos",
};

function readRequestsFile(path: string): GenerateRequest[] {
  const lines = readFileSync(path, "utf8").split("\n").map((l) => l.trim());
  const requests: GenerateRequest[] = [];
  lines.forEach((line, i) => {
    if (!line) return;
    const value = parseJson(line, `${path}:${i + 1}`);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new CliError(`${path}:${i + 1}: expected a JSON object`);
    const req: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      const field = REQUEST_FIELDS[key];
      if (!field) throw new CliError(`${path}:${i + 1}: unknown field "${key}"`);
      req[field] = v;
    }
    requests.push(req as GenerateRequest);
  });
  if (requests.length === 0) throw new CliError(`${path}: no requests`);
  return requests;
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CliError(`${where}: ${(e as Error).message}`);
  }
}
