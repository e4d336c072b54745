// The engine's contracts with its parts: the model runner, the adapter store, its events and options.
import type { AdapterStore } from "../adapters/adapter-store.ts";
import type { LoraAdapter } from "../adapters/lora-adapter.ts";
import type { ModelConfig } from "../model/config.ts";
import type { HostBatch } from "./batch-builder.ts";
import type { SchedulingPolicy } from "./fair-share.ts";
import type { GrammarMasks } from "./grammar-masks.ts";
import type { LogitRules } from "./logit-rules.ts";
import type { RunnerOptions, SampleRow, StepSamples } from "./model-runner.ts";
import type { SamplingParams } from "./sampling.ts";
import type { Sequence } from "./sequence.ts";

/** What the engine needs of the adapter store. */
export type EngineAdapters = Pick<AdapterStore, "has" | "names" | "get" | "isPinned" | "onDrop" | "onLoad" | "identity">;

/** What the engine needs of a model runner (the real one, or a stub that measures the loop). */
export interface StepRunner {
  readonly opts: RunnerOptions;
  readonly config: ModelConfig;
  /** forget: the adapter left the host tier (its packed host image may go; device slots are unaffected). */
  /** prepare: the adapter entered the host tier (pack its upload image now, off the step loop). */
  readonly lora: { load(slot: number, adapter: LoraAdapter): void; clear(slot: number): void; forget(adapter: LoraAdapter): void; prepare(adapter: LoraAdapter): void };
  readonly rules: Pick<LogitRules, "acquireCountRow" | "releaseCountRow">;
  run(batch: HostBatch): void;
  readLogits(rows: number): Float32Array;
  sample(rows: SampleRow[], nTop: number): StepSamples;
}

export interface EngineEvents {
  /** Called for each sampled token (streaming). */
  token(seq: Sequence): void;
  /** An adapter was copied into a device slot in `seconds` (`replaced`: the idle adapter it displaced). */
  slotLoaded(adapter: string, replaced: string | null, seconds: number): void;
  /** The sequence joined the running batch (again, after a preemption). */
  scheduled(seq: Sequence): void;
  slotHit(adapter: string): void;
  preempted(seq: Sequence): void;
  /** The sequence could not run (its adapter failed to load into a slot, or a batch failed with it alone). */
  failed(seq: Sequence, error: unknown): void;
}


export interface EngineRequest {
  promptIds: number[];
  adapter: string | null;
  params: SamplingParams;
}

export interface EngineOptions {
  /** Reuse cached K/V of shared prefixes (default true). */
  prefixCaching?: boolean;
  /** fair (default): a full batch makes room for a waiting adapter's request; fcfs: requests wait their turn. */
  policy?: SchedulingPolicy;
  /** Next-token masks of sequences under a grammar (structured output); without it such requests are refused. */
  grammar?: GrammarMasks;
}
