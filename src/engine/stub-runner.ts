// A runner whose forward pass does nothing and whose sampler continues every sequence with one fixed text: measures what the
// host (scheduler, HTTP, SSE, detokenization, stop strings) sustains with the model out of the way.
import type { LoraAdapter } from "../adapters/lora-adapter.ts";
import type { ModelConfig } from "../model/config.ts";
import type { HostBatch } from "./batch-builder.ts";
import type { StepRunner } from "./engine.ts";
import type { RunnerOptions, SampleRow, StepSamples } from "./model-runner.ts";

export class StubRunner implements StepRunner {
  readonly lora = { load(_slot: number, _adapter: LoraAdapter) {}, clear(_slot: number) {}, forget(_adapter: LoraAdapter) {}, prepare(_adapter: LoraAdapter) {} };
  // no logits to rule: count rows are handed out and taken back only
  readonly rules = { acquireCountRow: () => 0, releaseCountRow: (_row: number) => {} };
  /** The token after each of the text's tokens (its first occurrence); any other token starts the text. */
  private readonly next = new Map<number, number>();
  private lastTokens = new Int32Array(0);

  /** `tokens`: the text each sequence continues with (a real text's, so detokenization does real work). */
  constructor(readonly config: ModelConfig, readonly opts: RunnerOptions, private readonly tokens: readonly number[] = [29871]) {
    if (tokens.length === 0) throw new Error("StubRunner needs at least one token to emit");
    tokens.forEach((t, i) => {
      if (!this.next.has(t)) this.next.set(t, tokens[(i + 1) % tokens.length]);
    });
  }

  run(batch: HostBatch): void {
    this.lastTokens = batch.logitRows.map((row) => batch.tokenIds[row]);
  }

  readLogits(rows: number): Float32Array {
    return new Float32Array(rows * this.config.vocabSize);
  }

  sample(rows: SampleRow[], nTop: number): StepSamples {
    const n = rows.length;
    const ids = new Int32Array(n);
    for (let r = 0; r < n; r++) ids[r] = this.next.get(this.lastTokens[r]) ?? this.tokens[0];
    return { ids, logprobs: new Float32Array(n), topIds: new Int32Array(n * nTop), topLogprobs: new Float32Array(n * nTop), nTop };
  }

  free(): void {}
}
