// The engine thread's side of structured output for one model: compiles constraints on the grammar
// thread (async, before a request is queued) and, each step, hands it the constrained sequences
// before the forward pass and collects their next-token masks after it (synchronously, through
// shared memory). The thread starts with the first constrained request.
import type { Sequence } from "../engine/sequence.ts";
import type { GrammarMasks, GrammarRowResult } from "../engine/grammar-masks.ts";
import { HEADER_WORDS, ROW_NO_GRAMMAR, ROW_OK, sharedBytes, type GrammarReply, type GrammarRequest, type MaskRowRequest } from "./grammar-protocol.ts";
import { GrammarError, grammarKey, type GrammarRef, type GrammarSpec } from "./grammar-spec.ts";
import type { GrammarVocab } from "./grammar-vocab.ts";

// In the single executable the worker is an extra entrypoint (see the Makefile), found by its path from the build's root.
const WORKER = import.meta.url.startsWith("file:///$bunfs/")
  ? "./src/grammar/grammar-worker.ts"
  : new URL("./grammar-worker.ts", import.meta.url).href;

/** How long a step waits for masks before it runs without its constrained rows (they run next step). */
const MASK_WAIT_MS = 200;

export interface GrammarStats {
  /** Grammars compiled (cache misses) and the time they took, as the engine thread saw it (µs). */
  compiles: number;
  compileUs: number;
  steps: number;
  /** Time the grammar thread spent on masks, summed over steps (µs). */
  maskUs: number;
  /** Of it, time the engine thread waited after its forward pass (µs): what was not hidden. */
  waitedUs: number;
  /** Steps whose constrained rows were deferred because masks were late. */
  deferred: number;
}

export class GrammarService implements GrammarMasks {
  private worker: Worker | null = null;
  private header!: Int32Array;
  private status!: Int32Array;
  private masks!: Uint32Array;
  private readonly words: number;
  private nextCompile = 0;
  private readonly compiling = new Map<number, { resolve: () => void; reject: (e: Error) => void; field: string }>();
  private readonly ready = new Set<string>();
  private step = 0;
  /** The step posted and not yet collected, with its sequences in row order. */
  private posted: { step: number; seqs: Sequence[] } | null = null;
  private readonly accepted = new Map<Sequence, number>();
  /** Sequences whose matcher was on a thread that is gone: their grammar state is lost, they fail. */
  private readonly lost = new WeakSet<Sequence>();
  readonly stats: GrammarStats = { compiles: 0, compileUs: 0, steps: 0, maskUs: 0, waitedUs: 0, deferred: 0 };

  constructor(private readonly vocab: GrammarVocab, private readonly maxRows: number) {
    this.words = Math.ceil(vocab.vocabSize / 32);
  }

  /** Compiles (or finds cached) the constraint; rejects with a GrammarError naming `field`. */
  async compile(spec: GrammarSpec, field: string): Promise<GrammarRef> {
    const key = grammarKey(spec);
    if (!this.ready.has(key)) {
      const w = this.start(), id = this.nextCompile++, t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        this.compiling.set(id, { resolve, reject, field });
        w.postMessage({ kind: "compile", id, key, spec } satisfies GrammarRequest);
      });
      this.ready.add(key);
      this.stats.compiles++;
      this.stats.compileUs += Math.round((performance.now() - t0) * 1000);
    }
    return { key, field };
  }

  begin(all: Sequence[]): void {
    if (this.posted || !this.worker) return; // masks of an earlier step are still being made: these rows wait (end says which)
    const seqs = all.filter((seq) => !this.lost.has(seq));
    const rows: MaskRowRequest[] = seqs.map((seq) => {
      const from = this.accepted.get(seq) ?? 0;
      this.accepted.set(seq, seq.outputs.length);
      return {
        seqId: seq.id, key: seq.params.grammar!.key, accept: seq.outputs.slice(from).map((t) => t.id),
        stopTokenIds: [...(seq.params.ignoreEos ? [] : seq.params.stopTokenIds), ...(seq.params.extraStopTokenIds ?? [])],
      };
    });
    this.posted = { step: ++this.step, seqs };
    this.worker.postMessage({ kind: "step", step: this.step, rows } satisfies GrammarRequest);
  }

  end(all: Sequence[]): Map<Sequence, GrammarRowResult> {
    const out = new Map<Sequence, GrammarRowResult>();
    for (const seq of all) if (!this.worker || this.lost.has(seq)) out.set(seq, "unavailable");
    const seqs = all.filter((seq) => !out.has(seq));
    if (seqs.length === 0) return out;
    const posted = this.posted;
    const t0 = performance.now();
    // behind a compile the thread may be busy for long: then the rows wait a step instead of everyone
    const wait = this.compiling.size > 0 ? 0 : MASK_WAIT_MS;
    const done = posted !== null && this.waitForStep(posted.step, wait);
    if (!posted || !done || posted.seqs.length !== seqs.length || posted.seqs.some((s, i) => s !== seqs[i])) {
      if (posted && done) this.posted = null; // finished, but for other rows: post afresh next step
      this.stats.deferred++;
      for (const seq of seqs) out.set(seq, "pending");
      return out;
    }
    this.posted = null;
    this.stats.steps++;
    this.stats.maskUs += this.header[1];
    this.stats.waitedUs += Math.round((performance.now() - t0) * 1000);
    seqs.forEach((seq, r) => {
      const s = this.status[r];
      out.set(seq, s === ROW_OK ? this.masks.slice(r * this.words, (r + 1) * this.words) : s === ROW_NO_GRAMMAR ? "unavailable" : "rejected");
    });
    return out;
  }

  // Whether the grammar thread finishes `step` within `ms` (it bumps the counter once a step's masks are written).
  private waitForStep(step: number, ms: number): boolean {
    const until = performance.now() + ms;
    for (let seen = Atomics.load(this.header, 0); seen !== step; seen = Atomics.load(this.header, 0)) {
      const left = until - performance.now();
      if (left <= 0 || Atomics.wait(this.header, 0, seen, left) === "timed-out") return Atomics.load(this.header, 0) === step;
    }
    return true;
  }

  release(seq: Sequence): void {
    if (!this.accepted.delete(seq)) return;
    this.worker?.postMessage({ kind: "close", seqIds: [seq.id] } satisfies GrammarRequest);
  }

  close(): void {
    this.worker?.terminate();
    this.forgetThread(new Error("the grammar thread was stopped"));
  }

  // The thread is gone with its compiled grammars and matchers: what it held must be made again.
  private forgetThread(error: Error): void {
    this.worker = null;
    for (const p of this.compiling.values()) p.reject(error);
    this.compiling.clear();
    this.ready.clear();
    this.posted = null;
    for (const seq of this.accepted.keys()) this.lost.add(seq);
    this.accepted.clear();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const shared = new SharedArrayBuffer(sharedBytes(this.maxRows, this.words));
    this.header = new Int32Array(shared, 0, HEADER_WORDS);
    this.status = new Int32Array(shared, HEADER_WORDS * 4, this.maxRows);
    this.masks = new Uint32Array(shared, (HEADER_WORDS + this.maxRows) * 4, this.maxRows * this.words);
    const w = new Worker(WORKER);
    w.unref();
    w.onmessage = (event: MessageEvent<GrammarReply>) => {
      const p = this.compiling.get(event.data.id);
      if (!p) return;
      this.compiling.delete(event.data.id);
      if (event.data.error) p.reject(new GrammarError(`${p.field}: the grammar engine cannot compile it: ${event.data.error}`, p.field));
      else p.resolve();
    };
    w.onerror = (event) => {
      w.terminate();
      // the next constrained request starts a new thread; the running ones fail as "unavailable"
      this.forgetThread(new Error(`the grammar thread failed: ${event.message}`));
    };
    w.postMessage({ kind: "init", vocab: this.vocab, shared, maxRows: this.maxRows } satisfies GrammarRequest);
    this.worker = w;
    return w;
  }
}
