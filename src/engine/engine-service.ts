// The asynchronous face of one model's engine for the server: requests in, token streams out,
// the step loop running between HTTP events, adapters loaded off the loop, metrics recorded.
import { UnknownAdapterError } from "../adapters/adapter-store.ts";
import { log } from "../log.ts";
import { IncrementalDetokenizer } from "../tokenizer/detokenizer.ts";
import { TokenizerPool } from "../tokenizer/tokenizer-pool.ts";
import type { Engine } from "./engine.ts";
import type { LoadedModel } from "./load-model.ts";
import type { SamplingParams } from "./sampling.ts";
import type { EngineSnapshot, Metrics } from "./metrics.ts";
import { ServiceTelemetry, type RequestTelemetry } from "./request-telemetry.ts";
import type { Sequence } from "./sequence.ts";
import { wireEngine } from "./service-metrics.ts";
import { StopStringMatcher } from "./stop-strings.ts";
import { TokenStream } from "./token-stream.ts";
import { AdapterAdmin } from "./adapter-admin.ts";
import { CancelledError, OverloadedError } from "./service-errors.ts";
import type { GenerationHandle, GenerationRequest, StreamEvent } from "./service-types.ts";

export type { GenerationHandle, GenerationRequest, StreamEvent };

export interface ServiceOptions {
  /** Name clients use for the base model (`model` in OpenAI requests). */
  name: string;
  /** Requests waiting beyond this are refused with OverloadedError. */
  maxQueue: number;
  /** Largest prompt text in bytes (0 or absent: the context length times the longest token's bytes). */
  maxPromptBytes?: number;
  /** Threads that tokenize long prompts (default 1; 0: on the event loop). */
  tokenizerThreads?: number;
  /** A log line as each request ends (default off). */
  logRequests?: boolean;
  metrics: Metrics;
}

export type { LoadedModel };

interface RequestState {
  req: GenerationRequest;
  stream: TokenStream<StreamEvent>;
  detok: IncrementalDetokenizer;
  stops: StopStringMatcher | null;
  telemetry: RequestTelemetry;
  seq: Sequence | null;
  done: boolean;
}

export class EngineService {
  readonly name: string;
  readonly maxModelLen: number;
  /** Prompt text past this many bytes cannot fit the context: refused before it is tokenized. */
  readonly maxPromptBytes: number;
  /** Tokenizes prompt text, long texts off the event loop. */
  readonly tokenizerPool: TokenizerPool;
  private readonly engine: Engine;
  /** Metrics, token totals and log lines per request. */
  readonly telemetry: ServiceTelemetry;
  private readonly states = new Set<RequestState>();
  private readonly bySeq = new Map<Sequence, RequestState>();
  /** Runtime adapter registration, pins and draining unloads. */
  readonly adapterAdmin: AdapterAdmin;
  private loadingCount = 0;
  /** Queue, batch, KV cache and adapter tiers now (what /metrics reports). */
  readonly snapshot: () => EngineSnapshot;
  private accepting = true;
  private stopped = false;
  private looping = false;
  private wake: (() => void) | null = null;
  private idle: (() => void)[] = [];

  constructor(readonly model: LoadedModel, private readonly opts: ServiceOptions) {
    this.name = opts.name;
    this.engine = model.engine;
    this.adapterAdmin = new AdapterAdmin(model.adapters, model.engine);
    this.maxModelLen = this.engine.maxModelLen;
    this.maxPromptBytes = opts.maxPromptBytes || this.maxModelLen * model.tokenizer.maxTokenBytes;
    this.tokenizerPool = new TokenizerPool(model.tokenizer, opts.tokenizerThreads ?? 1);
    this.telemetry = new ServiceTelemetry(opts.metrics, opts.name, opts.logRequests ?? false);
    this.snapshot = wireEngine(model, opts.metrics, opts.name, {
      token: (seq) => this.onToken(seq),
      scheduled: (seq) => this.bySeq.get(seq)?.telemetry.scheduled(),
      failed: (seq, error) => this.onFailed(seq, error),
      waiting: () => this.loadingCount + this.engine.numWaiting,
    });
  }

  /** Requests accepted and not yet finished (loading their adapter, waiting, or running). */
  get inFlight(): number {
    return this.states.size;
  }

  start(): void {
    if (this.looping) return;
    this.looping = true;
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.tokenizerPool.close();
    this.model.grammar?.close();
    this.notify();
  }

  submit(req: GenerationRequest): GenerationHandle {
    if (!this.accepting) throw new OverloadedError("the server is shutting down", 5);
    if (this.loadingCount + this.engine.numWaiting >= this.opts.maxQueue) {
      throw new OverloadedError(`the queue is full (${this.opts.maxQueue} requests waiting)`, 1);
    }
    if (req.adapter !== null && this.adapterAdmin.isDraining(req.adapter)) throw new UnknownAdapterError(`adapter "${req.adapter}" is being unloaded`);
    this.engine.check(req);
    const params = req.params;
    const state: RequestState = {
      req, stream: new TokenStream(), detok: new IncrementalDetokenizer(this.model.tokenizer, { skipSpecialTokens: true, promptIds: req.promptIds }),
      stops: req.stop && req.stop.length > 0 ? new StopStringMatcher(req.stop) : null,
      telemetry: this.telemetry.begin(req), seq: null, done: false,
    };
    this.states.add(state);
    if (req.adapter !== null) {
      this.model.adapters.acquire(req.adapter);
      if (!this.model.adapters.request(req.adapter)) {
        this.loadingCount++;
        this.model.adapters.load(req.adapter)
          .then(() => this.enqueue(state, params))
          .catch((e) => this.end(state, e))
          .finally(() => this.loadingCount--);
      } else {
        this.enqueue(state, params);
      }
    } else {
      this.enqueue(state, params);
    }
    req.signal?.addEventListener("abort", () => this.cancel(state, new CancelledError("the client went away")), { once: true });
    return { events: state.stream, promptTokens: req.promptIds.length, cancel: () => this.cancel(state, new CancelledError("cancelled")) };
  }

  /** Registers (and checks) an adapter; see AdapterAdmin. */
  loadAdapter(name: string, path: string, opts: { pin?: boolean; preload?: boolean } = {}): Promise<void> {
    return this.adapterAdmin.load(name, path, opts);
  }

  pin(name: string, pinned = true): Promise<void> {
    return this.adapterAdmin.pin(name, pinned);
  }

  unloadAdapter(name: string, opts: { wait?: boolean; timeoutMs?: number } = {}): Promise<void> {
    return this.adapterAdmin.unload(name, opts);
  }

  hasAdapter(name: string): boolean {
    return this.model.adapters.has(name);
  }

  adapterNames(): string[] {
    return this.model.adapters.names();
  }

  adapterDir(name: string): string {
    return this.model.adapters.dirOf(name);
  }

  beginShutdown(): void {
    this.accepting = false;
  }

  /** Resolves once nothing is in flight; at the timeout, cancels what remains. */
  async drain(timeoutMs: number): Promise<void> {
    if (this.states.size === 0) return;
    const idle = new Promise<void>((resolve) => this.idle.push(resolve));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
    if ((await Promise.race([idle, timeout])) === "timeout") {
      for (const state of [...this.states]) this.cancel(state, new CancelledError("the server shut down before the request finished"));
    }
    clearTimeout(timer);
  }

  private enqueue(state: RequestState, params: SamplingParams): void {
    if (state.done) return;
    state.seq = this.engine.add({ promptIds: state.req.promptIds, adapter: state.req.adapter, params });
    this.bySeq.set(state.seq, state);
    this.notify();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (!this.engine.hasWork) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      try {
        this.engine.step();
      } catch (e) {
        log.error(`${this.name}: engine step failed: ${(e as Error).message}`);
        for (const state of [...this.states]) if (state.seq) this.cancel(state, e);
      }
      await new Promise((resolve) => setImmediate(resolve)); // let HTTP handlers run between steps
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private onToken(seq: Sequence): void {
    const state = this.bySeq.get(seq);
    if (!state) return;
    const token = seq.outputs[seq.outputs.length - 1];
    state.telemetry.token();
    let text = state.detok.push(token.id);
    if (seq.finished) text += state.detok.flush();
    let stopString: string | undefined;
    if (state.stops && seq.mayStop) {
      const matched = state.stops.push(text);
      text = matched.text;
      if (matched.stopped) seq.stop();
      else if (seq.finished) text += state.stops.flush();
      stopString = matched.matched;
    }
    state.stream.push({
      token, text, finishReason: seq.finishReason,
      ...(seq.finished ? { stopReason: stopString ?? seq.stoppedByToken ?? null } : {}),
      ...(seq.outputs.length === 1 ? { cachedTokens: seq.cachedTokens ?? 0, ...(seq.promptLogprobs ? { promptLogprobs: seq.promptLogprobs } : {}) } : {}),
    });
    if (seq.finished) this.end(state, null);
  }

  // the engine could not run this request (and only this one): it ends with the error
  private onFailed(seq: Sequence, error: unknown): void {
    const state = this.bySeq.get(seq);
    log.error(`${this.name}: a request for ${seq.adapter === null ? "the base model" : `adapter "${seq.adapter}"`} failed alone: ${(error as Error)?.message ?? error}`);
    if (!state) return;
    this.end(state, error);
  }

  private cancel(state: RequestState, error: unknown): void {
    if (state.done) return;
    if (state.seq) this.engine.abort(state.seq);
    this.end(state, error);
  }

  // Releases everything a request holds, exactly once.
  private end(state: RequestState, error: unknown): void {
    if (state.done) return;
    state.done = true;
    if (state.seq) this.bySeq.delete(state.seq);
    if (state.req.adapter !== null) this.model.adapters.release(state.req.adapter);
    this.states.delete(state);
    if (error === null) state.stream.close();
    else state.stream.fail(error);
    const status = error === null ? state.seq?.finishReason ?? "stop" : error instanceof CancelledError ? "abort" : "error";
    state.telemetry.ended(status, error);
    if (this.states.size === 0) for (const resolve of this.idle.splice(0)) resolve();
  }
}
