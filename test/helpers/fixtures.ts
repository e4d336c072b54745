// Paths and readers for the HF/PEFT reference fixtures in test/fixtures/hf (see its README).
import { join, resolve } from "node:path";
import { Device } from "../../src/native/device.ts";
import { loadModel, type LoadOptions, type LoadedModel } from "../../src/engine/load-model.ts";
import type { SamplingParams } from "../../src/engine/sampling.ts";

export const FIXTURES = resolve(import.meta.dir, "../fixtures/hf");
export const MODEL_NAMES = ["tiny-llama2", "tiny-mistral", "tiny-llama3"] as const;
export type FixtureModel = (typeof MODEL_NAMES)[number];

export const modelDir = (name: FixtureModel): string => join(FIXTURES, "models", name);
export const adaptersDir = (name: FixtureModel): string => join(modelDir(name), "adapters");

export interface GreedyStep {
  top_ids: number[];
  top_logits: number[];
  margin: number;
  logsumexp: number;
}

export interface ReferenceCase {
  adapter: string | null;
  prompt: string;
  prompt_ids: number[];
  topk_ids: number[][];
  topk_logits: number[][];
  logsumexp: number[];
  greedy_ids: number[];
  greedy_steps: GreedyStep[];
}

export async function readReference(name: FixtureModel): Promise<{ cases: ReferenceCase[] }> {
  return Bun.file(join(modelDir(name), "reference.json")).json();
}

let cpu: Device | undefined;
export async function cpuDevice(): Promise<Device> {
  cpu ??= await Device.open("cpu");
  return cpu;
}

export async function loadFixtureModel(name: FixtureModel, opts: Partial<LoadOptions> = {}): Promise<LoadedModel> {
  return loadModel({ modelDir: modelDir(name), adaptersDir: adaptersDir(name), device: await cpuDevice(), ...opts });
}

export function greedyParams(maxTokens: number, topLogprobs = 0): SamplingParams {
  return { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens, topLogprobs, ignoreEos: true, stopTokenIds: [] };
}

/** Greedy steps before the first whose reference margin is under `minMargin` (where two correct engines may differ). */
export function comparableSteps(steps: GreedyStep[], minMargin: number): number {
  const cut = steps.findIndex((s) => s.margin < minMargin);
  return cut === -1 ? steps.length : cut;
}
