// The step loop for one model: admit waiting sequences (KV blocks, adapter slots, token budget),
// run prefill and decode tokens together, sample, and retire finished sequences.
import type { AdapterStore } from "../adapters/adapter-store.ts";
import { SlotAssigner } from "../adapters/slot-assigner.ts";
import { BlockManager } from "./block-manager.ts";
import { buildBatch, type ScheduledSeq } from "./batch-builder.ts";
import type { ModelRunner } from "./model-runner.ts";
import { checkSamplingParams, uniformFor, type SamplingParams } from "./sampling.ts";
import { Sequence } from "./sequence.ts";

export class RequestError extends Error {
  override name = "RequestError";
}

const SCORING_PARAMS: SamplingParams = {
  temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 1, topLogprobs: 0, ignoreEos: true, stopTokenIds: [],
};

export interface EngineRequest {
  promptIds: number[];
  adapter: string | null;
  params: SamplingParams;
}

export class Engine {
  private readonly blocks: BlockManager;
  private readonly slots: SlotAssigner;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly slotOfSeq = new Map<Sequence, number>();
  private nextId = 0;
  /** Called for each sampled token (streaming). */
  onToken: (seq: Sequence) => void = () => {};

  constructor(readonly runner: ModelRunner, readonly adapters: AdapterStore, readonly maxModelLen: number) {
    this.blocks = new BlockManager(runner.opts.numBlocks, runner.opts.blockSize);
    this.slots = new SlotAssigner(runner.opts.maxLoras);
  }

  get hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** Validates and queues a request; errors here are the caller's (bad input), never the engine's. */
  add(req: EngineRequest): Sequence {
    this.check(req);
    const seq = new Sequence(this.nextId++, req.promptIds, req.adapter, req.params);
    this.waiting.push(seq);
    return seq;
  }

  /** Throws RequestError / SamplingError / UnknownAdapterError / AdapterError for a request that cannot run. */
  check(req: EngineRequest): void {
    const { config } = this.runner;
    checkSamplingParams(req.params);
    if (req.promptIds.length === 0) throw new RequestError("the prompt is empty");
    const bad = req.promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= config.vocabSize);
    if (bad !== undefined) throw new RequestError(`prompt token id ${bad} is outside the vocabulary [0, ${config.vocabSize})`);
    const total = req.promptIds.length + req.params.maxTokens;
    if (total > this.maxModelLen) {
      throw new RequestError(`the prompt (${req.promptIds.length} tokens) plus max_tokens (${req.params.maxTokens}) is ${total} tokens, over the context length ${this.maxModelLen}`);
    }
    // a request the whole KV cache cannot hold would never finish and would block the queue (FIFO);
    // `total` (not total - 1): a sequence preempted at its last step is readmitted with room for one more
    if (this.blocks.blocksFor(total) > this.blocks.numBlocks) {
      throw new RequestError(`the prompt plus max_tokens (${total} tokens) needs ${this.blocks.blocksFor(total)} KV cache blocks, the cache holds ${this.blocks.numBlocks}`);
    }
    if (req.promptIds.length > this.runner.opts.caps.maxTokens) {
      throw new RequestError(`the prompt (${req.promptIds.length} tokens) exceeds the per-step token budget ${this.runner.opts.caps.maxTokens}`);
    }
    if (req.adapter !== null) this.adapters.get(req.adapter); // unknown or invalid adapter: fail now, not mid-batch
  }

  /** One engine step; returns the sequences that finished in it. */
  step(): Sequence[] {
    this.admit();
    this.reserveDecodeBlocks();
    if (this.running.length === 0) {
      if (this.waiting.length > 0) throw new Error("no waiting sequence fits in an empty engine (KV cache or adapter slots too small)");
      return [];
    }
    const items: ScheduledSeq[] = this.running.map((seq) => ({
      seq, numTokens: seq.length - seq.numComputed, slot: this.slotOfSeq.get(seq) ?? -1, sample: true,
    }));
    items.sort((a, b) => a.slot - b.slot); // one LoRA segment per adapter
    const { caps } = this.runner.opts;
    const batch = buildBatch(items, this.blocks.blockSize, caps.maxBlocksPerSeq);
    this.runner.run(batch);
    const nTop = Math.max(0, ...items.map((it) => it.seq.params.topLogprobs));
    const samples = this.runner.sample(items.map((it) => ({
      temperature: it.seq.params.temperature, topK: it.seq.params.topK, topP: it.seq.params.topP,
      uniform: uniformFor(it.seq.params.seed, it.seq.outputs.length),
    })), nTop);
    const finished: Sequence[] = [];
    items.forEach((it, r) => {
      const { seq } = it;
      seq.numComputed += it.numTokens;
      const topLogprobs = [];
      for (let j = 0; j < seq.params.topLogprobs; j++) {
        topLogprobs.push({ id: samples.topIds[r * nTop + j], logprob: samples.topLogprobs[r * nTop + j] });
      }
      seq.append({ id: samples.ids[r], logprob: samples.logprobs[r], topLogprobs });
      this.onToken(seq);
      if (seq.finished) finished.push(seq);
    });
    for (const seq of finished) this.retire(seq);
    return finished;
  }

  /**
   * Logits at every position of each prompt, all prompts in one batch (for scoring and tests).
   * Needs an idle engine and capacities that hold the whole batch.
   */
  promptLogits(reqs: { promptIds: number[]; adapter: string | null }[]): Float32Array[] {
    if (this.hasWork) throw new Error("promptLogits needs an idle engine");
    const vocab = this.runner.config.vocabSize;
    const seqs = reqs.map((r) => this.add({ ...r, params: { ...SCORING_PARAMS } }));
    this.waiting.length = 0;
    try {
      const items: ScheduledSeq[] = seqs.map((seq) => {
        if (!this.blocks.ensure(seq, seq.length)) throw new Error("the KV cache cannot hold this batch");
        let slot = -1;
        if (seq.adapter !== null) {
          const got = this.slots.acquire(seq.adapter);
          if (!got) throw new Error("more distinct adapters than slots");
          if (got.load) this.runner.lora.load(got.slot, this.adapters.get(seq.adapter));
          this.slotOfSeq.set(seq, got.slot);
          slot = got.slot;
        }
        return { seq, numTokens: seq.length, slot, sample: false };
      });
      const batch = buildBatch(items, this.blocks.blockSize, this.runner.opts.caps.maxBlocksPerSeq, true);
      this.runner.run(batch);
      const all = this.runner.readLogits(batch.logitRows.length);
      return items.map((it, s) => all.slice(batch.qIndptr[s] * vocab, batch.qIndptr[s + 1] * vocab));
    } finally {
      for (const seq of seqs) {
        this.releaseAdapter(seq);
        this.blocks.release(seq);
      }
    }
  }

  /** Runs until every queued sequence has finished. */
  runToCompletion(): void {
    while (this.hasWork) this.step();
  }

  // FIFO admission: stop at the first sequence that does not fit, so none is overtaken for ever.
  private admit(): void {
    const { caps } = this.runner.opts;
    let budget = caps.maxTokens - this.running.reduce((n, s) => n + s.length - s.numComputed, 0);
    while (this.waiting.length > 0 && this.running.length < caps.maxSeqs) {
      const seq = this.waiting[0];
      const need = seq.length - seq.numComputed;
      if (need > budget || this.blocks.missingBlocks(seq, seq.length + 1) > this.blocks.freeBlocks) return;
      if (seq.adapter !== null) {
        const got = this.slots.acquire(seq.adapter);
        if (!got) return;
        if (got.load) this.runner.lora.load(got.slot, this.adapters.get(seq.adapter));
        this.slotOfSeq.set(seq, got.slot);
      }
      this.blocks.ensure(seq, seq.length);
      this.waiting.shift();
      this.running.push(seq);
      budget -= need;
    }
  }

  // Each running sequence needs room for the token it computes this step; when the cache is full,
  // the newest sequence gives its blocks back and is recomputed later.
  private reserveDecodeBlocks(): void {
    for (let i = 0; i < this.running.length; i++) {
      const seq = this.running[i];
      while (!this.blocks.ensure(seq, seq.length)) {
        const victim = this.running[this.running.length - 1];
        this.preempt(victim);
        if (victim === seq) return;
      }
    }
  }

  private preempt(seq: Sequence): void {
    this.running.splice(this.running.indexOf(seq), 1);
    this.releaseAdapter(seq);
    this.blocks.release(seq);
    this.waiting.unshift(seq);
  }

  private retire(seq: Sequence): void {
    this.running.splice(this.running.indexOf(seq), 1);
    this.releaseAdapter(seq);
    this.blocks.release(seq);
  }

  private releaseAdapter(seq: Sequence): void {
    if (seq.adapter !== null && this.slotOfSeq.delete(seq)) this.slots.release(seq.adapter);
  }
}
