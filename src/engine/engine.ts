// The step loop for one model: admit waiting sequences (KV blocks, adapter slots, token budget),
// run prefill and decode tokens together, sample, and retire finished sequences.
import { SlotAssigner } from "../adapters/slot-assigner.ts";
import { admit } from "./admission.ts";
import { BlockManager } from "./block-manager.ts";
import type { SchedulingPolicy } from "./fair-share.ts";
import type { EngineAdapters, EngineEvents, EngineOptions, EngineRequest, StepRunner } from "./engine-types.ts";
import { buildBatch, type ScheduledSeq } from "./batch-builder.ts";
import type { SampleRow, StepSamples } from "./model-runner.ts";
import type { SamplingParams } from "./sampling.ts";
import { SampleRows } from "./sample-rows.ts";
import type { GrammarMasks, GrammarRowResult } from "./grammar-masks.ts";
import { RequestError, checkRequest } from "./request-check.ts";
import { Sequence, type PromptTokenLogprob } from "./sequence.ts";
import { scorePrompts } from "./prompt-logprobs.ts";
import { WaitingQueues } from "./waiting-queues.ts";

export type { EngineAdapters, EngineEvents, EngineOptions, EngineRequest, StepRunner } from "./engine-types.ts";

/** The sampler row of a sequence whose sample this step is dropped: greedy, no rules, nothing counted. */
const DROPPED_ROW: SampleRow = { temperature: 0, topK: 0, topP: 1, minP: 0, uniform: 0 };

const SCORING_PARAMS: SamplingParams = {
  temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 1, topLogprobs: 0, ignoreEos: true, stopTokenIds: [],
};

export class Engine {
  readonly blocks: BlockManager;
  readonly slots: SlotAssigner;
  private readonly waiting = new WaitingQueues();
  private readonly running: Sequence[] = [];
  private readonly slotOfSeq = new Map<Sequence, number>();
  /** Steps each slot-starved waiting sequence has been passed over. */
  private readonly slotWait = new Map<Sequence, number>();
  private readonly sampleRows: SampleRows;
  private readonly grammar: GrammarMasks | undefined;
  private nextId = 0;
  events: EngineEvents = { token() {}, slotLoaded() {}, scheduled() {}, slotHit() {}, preempted() {}, failed() {} };

  readonly policy: SchedulingPolicy;

  constructor(readonly runner: StepRunner, readonly adapters: EngineAdapters, readonly maxModelLen: number, opts: EngineOptions = {}) {
    this.blocks = new BlockManager(runner.opts.numBlocks, runner.opts.blockSize, opts.prefixCaching ?? true);
    this.policy = opts.policy ?? "fair";
    this.sampleRows = new SampleRows(runner.rules);
    this.grammar = opts.grammar;
    this.slots = new SlotAssigner(runner.opts.maxLoras, (name) => adapters.isPinned(name));
    // an adapter dropped from host memory releases its upload image (a slot holding it keeps its copy)
    adapters.onDrop((adapter) => runner.lora.forget(adapter));
    // packed to the slot dtype as it enters host memory, so a slot load is the upload alone
    // (LORA_SERVE_PACK_AT_SLOT_LOAD=1: the earlier behaviour, for side-by-side timing)
    if (process.env.LORA_SERVE_PACK_AT_SLOT_LOAD !== "1") adapters.onLoad((adapter) => runner.lora.prepare(adapter));
  }

  get hasWork(): boolean {
    return this.waiting.size > 0 || this.running.length > 0;
  }

  get numWaiting(): number {
    return this.waiting.size;
  }

  /** Adapters of the running sequences, each once. */
  get runningAdapters(): string[] {
    return [...new Set(this.running.flatMap((s) => (s.adapter === null ? [] : [s.adapter])))];
  }

  /** Adapters of the waiting sequences, each once. */
  get waitingAdapters(): string[] {
    return [...new Set(this.waiting.all().flatMap((s) => (s.adapter === null ? [] : [s.adapter])))];
  }

  get numRunning(): number {
    return this.running.length;
  }

  /** Validates and queues a request; errors here are the caller's (bad input), never the engine's. */
  add(req: EngineRequest): Sequence {
    this.check(req);
    const seq = new Sequence(this.nextId++, req.promptIds, req.adapter, req.params);
    this.waiting.push(seq);
    return seq;
  }

  /** Throws RequestError / SamplingError / UnknownAdapterError for a request that cannot run. */
  check(req: EngineRequest): void {
    if (req.params.grammar && !this.grammar) throw new RequestError(`${req.params.grammar.field}: structured output is not available for this model`);
    checkRequest(req, { config: this.runner.config, caps: this.runner.opts.caps, maxModelLen: this.maxModelLen, blocks: this.blocks, adapters: this.adapters });
  }

  /** Removes a sequence wherever it is and frees what it holds; false if it is not in the engine. */
  abort(seq: Sequence): boolean {
    if (this.dropWaiting(seq)) return true;
    if (!this.running.includes(seq)) return false;
    this.retire(seq);
    return true;
  }

  // A waiting sequence leaves the queue for good (a preempted one may still hold a grammar matcher).
  private dropWaiting(seq: Sequence): boolean {
    if (!this.waiting.remove(seq)) return false;
    this.slotWait.delete(seq);
    this.grammar?.release(seq);
    return true;
  }

  /** Drops an idle adapter from its device slot (e.g. on unload); false while sequences use it. */
  evictFromSlot(adapter: string): boolean {
    const slot = this.slots.slotOfAdapter(adapter);
    if (slot === undefined) return true;
    if (!this.slots.evict(adapter)) return false;
    this.runner.lora.clear(slot);
    return true;
  }

  /** One engine step; returns the sequences that finished in it. */
  step(): Sequence[] {
    admit({
      runner: this.runner, blocks: this.blocks, slots: this.slots, waiting: this.waiting, running: this.running,
      slotWait: this.slotWait, slotOfSeq: this.slotOfSeq, adapters: this.adapters, policy: this.policy, events: this.events,
      identity: (seq) => this.identity(seq), preempt: (seq) => this.preempt(seq), fail: (seq, e) => this.fail(seq, e),
    });
    this.reserveDecodeBlocks();
    if (this.running.length === 0) {
      if (this.waiting.size > 0) throw new Error("no waiting sequence fits in an empty engine (KV cache or adapter slots too small)");
      return [];
    }
    const finished: Sequence[] = [];
    this.runIsolating([...this.running], finished);
    for (const seq of finished) this.retire(seq);
    return finished;
  }

  // Runs the sequences as one batch. Where the batch fails, its halves run apart, down to the single
  // sequences that fail alone: those fail (events.failed), every other one gets its token.
  private runIsolating(seqs: Sequence[], finished: Sequence[]): void {
    let items: ScheduledSeq[], samples: StepSamples, scored: Map<Sequence, (PromptTokenLogprob | null)[]>;
    let masks: Map<Sequence, GrammarRowResult> | undefined;
    try {
      ({ items, samples, scored, masks } = this.runBatch(seqs));
    } catch (e) {
      for (const seq of seqs) this.sampleRows.release(seq); // device counts may be ahead: recounted when next run
      if (seqs.length === 1) return this.fail(seqs[0], e);
      const mid = seqs.length >> 1;
      this.runIsolating(seqs.slice(0, mid), finished);
      this.runIsolating(seqs.slice(mid), finished);
      return;
    }
    items.forEach((it, r) => {
      const { seq } = it, mask = masks?.get(seq);
      if (mask !== undefined && !(mask instanceof Uint32Array)) return this.withoutMask(seq, mask);
      seq.numComputed += it.numTokens;
      seq.promptLogprobs ??= scored.get(seq) ?? null;
      this.blocks.register(seq, this.identity(seq));
      const topLogprobs = [];
      for (let j = 0; j < seq.params.topLogprobs; j++) {
        topLogprobs.push({ id: samples.topIds[r * samples.nTop + j], logprob: samples.topLogprobs[r * samples.nTop + j] });
      }
      seq.append({ id: samples.ids[r], logprob: samples.logprobs[r], topLogprobs });
      this.events.token(seq);
      if (seq.finished) finished.push(seq);
    });
  }

  // The forward pass and sampling for these sequences; changes no sequence (a failure can be retried).
  private runBatch(seqs: Sequence[]): {
    items: ScheduledSeq[]; samples: StepSamples; scored: Map<Sequence, (PromptTokenLogprob | null)[]>; masks?: Map<Sequence, GrammarRowResult>;
  } {
    const items: ScheduledSeq[] = seqs.map((seq) => ({
      seq, numTokens: seq.length - seq.numComputed, slot: this.slotOfSeq.get(seq) ?? -1, sample: true,
      promptRows: seq.needsPromptLogprobs && seq.numComputed === 0,
    }));
    items.sort((a, b) => a.slot - b.slot); // one LoRA segment per adapter
    const batch = buildBatch(items, this.blocks.blockSize, this.runner.opts.caps.maxBlocksPerSeq);
    const constrained = items.map((it) => it.seq).filter((seq) => seq.params.grammar);
    if (constrained.length) this.grammar!.begin(constrained);
    this.runner.run(batch);
    const scored = scorePrompts(this.runner, items, batch.logitRows.length);
    const nTop = Math.max(0, ...items.map((it) => it.seq.params.topLogprobs));
    // made on the grammar thread while the forward pass ran (on a GPU, while the kernels run)
    const masks = constrained.length ? this.grammar!.end(constrained) : undefined;
    const samples = this.runner.sample(items.map(({ seq }) => {
      const mask = masks?.get(seq);
      // a row without its mask this step: its sample is dropped, so it samples with no rules and counts nothing
      return mask === undefined || mask instanceof Uint32Array ? this.sampleRows.rowFor(seq, mask) : DROPPED_ROW;
    }), nTop);
    return { items, samples, scored, masks };
  }

  // A constrained sequence whose mask is late sits this step out (its sample is dropped); one whose
  // grammar rejected its last token, or has none, fails.
  private withoutMask(seq: Sequence, why: Exclude<GrammarRowResult, Uint32Array>): void {
    if (why === "pending") return;
    const field = seq.params.grammar!.field;
    this.fail(seq, new RequestError(why === "rejected" ? `${field}: the grammar rejected the generated text` : `${field}: the grammar engine is unavailable`));
  }


  // A sequence the engine cannot run: it leaves, freeing what it holds, and its owner hears why.
  private fail(seq: Sequence, error: unknown): void {
    if (this.running.includes(seq)) this.retire(seq);
    else this.dropWaiting(seq);
    this.events.failed(seq, error);
  }

  /**
   * Logits at every position of each prompt, all prompts in one batch (for scoring and tests).
   * Needs an idle engine and capacities that hold the whole batch.
   */
  promptLogits(reqs: { promptIds: number[]; adapter: string | null }[]): Float32Array[] {
    if (this.hasWork) throw new Error("promptLogits needs an idle engine");
    const vocab = this.runner.config.vocabSize;
    const seqs = reqs.map((r) => {
      this.check({ ...r, params: SCORING_PARAMS });
      return new Sequence(this.nextId++, r.promptIds, r.adapter, { ...SCORING_PARAMS });
    });
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
        this.releaseHeld(seq);
        this.blocks.release(seq);
      }
    }
  }

  /** Runs until every queued sequence has finished. */
  runToCompletion(): void {
    while (this.hasWork) this.step();
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
    this.releaseHeld(seq);
    this.blocks.release(seq);
    this.waiting.pushFront(seq);
    this.events.preempted(seq);
  }

  private retire(seq: Sequence): void {
    this.running.splice(this.running.indexOf(seq), 1);
    this.grammar?.release(seq);
    this.releaseHeld(seq);
    this.blocks.release(seq);
  }

  /** What a sequence's KV depends on besides its tokens: its adapter's weights (this registration of them). */
  private identity(seq: Sequence): string {
    return seq.adapter === null ? "" : this.adapters.identity(seq.adapter);
  }

  private releaseHeld(seq: Sequence): void {
    this.sampleRows.release(seq);
    if (seq.adapter !== null && this.slotOfSeq.delete(seq)) this.slots.release(seq.adapter);
  }
}
