// What a model's service observes about each request: queue time, time to first token, time per
// output token, end-to-end latency and the finish reason as metrics (lora_serve_* and vLLM's
// names), token totals for the stats line, and one log line as the request ends.
import { logFields } from "../log.ts";
import type { Metrics } from "./metrics.ts";
import type { GenerationRequest } from "./service-types.ts";

type Series = { observe(value: number): void };
export type RequestStatus = "stop" | "length" | "abort" | "error";

export class ServiceTelemetry {
  /** Tokens since start, for the periodic stats line. */
  promptTokens = 0;
  generatedTokens = 0;
  readonly tpot: Series;
  readonly ttft: Series[];
  readonly e2e: Series;
  readonly queue: Series;

  constructor(readonly metrics: Metrics, readonly model: string, readonly logRequests: boolean) {
    const byName = { model_name: model };
    this.tpot = metrics.timePerOutputToken.series({ model });
    this.ttft = [metrics.timeToFirstToken.series({ model }), metrics.vllmTimeToFirstToken.series(byName)];
    this.e2e = metrics.vllmE2eLatency.series(byName);
    this.queue = metrics.vllmQueueTime.series(byName);
  }

  begin(req: GenerationRequest): RequestTelemetry {
    const labels = { model: this.model, adapter: req.adapter ?? "" };
    this.metrics.promptTokens.inc(labels, req.promptIds.length);
    this.promptTokens += req.promptIds.length;
    return new RequestTelemetry(this, req, this.metrics.generationTokens.series(labels));
  }
}

export class RequestTelemetry {
  private readonly arrival = performance.now();
  private scheduledAt = 0;
  private firstTokenAt = 0;
  private lastTokenAt = 0;
  private outputTokens = 0;

  constructor(private readonly service: ServiceTelemetry, private readonly req: GenerationRequest, private readonly generated: { inc(): void }) {}

  /** It joined the running batch; only the first time counts as queue time. */
  scheduled(): void {
    if (this.scheduledAt !== 0) return;
    this.scheduledAt = performance.now();
    this.service.queue.observe((this.scheduledAt - this.arrival) / 1000);
  }

  token(): void {
    const now = performance.now();
    this.outputTokens++;
    this.service.generatedTokens++;
    this.generated.inc();
    if (this.firstTokenAt === 0) {
      this.firstTokenAt = now;
      for (const s of this.service.ttft) s.observe((now - this.arrival) / 1000);
    } else this.service.tpot.observe((now - this.lastTokenAt) / 1000);
    this.lastTokenAt = now;
  }

  /** Counts the request by how it ended and writes its log line; `error` explains an "error". */
  ended(status: RequestStatus, error?: unknown): void {
    const s = this.service;
    const now = performance.now();
    s.metrics.requests.inc({ model: s.model, adapter: this.req.adapter ?? "", finish_reason: status });
    if (status === "stop" || status === "length") s.e2e.observe((now - this.arrival) / 1000);
    if (!s.logRequests) return;
    logFields("request", {
      id: this.req.id ?? null, model: s.model, adapter: this.req.adapter, prompt_tokens: this.req.promptIds.length, output_tokens: this.outputTokens,
      ttft_ms: this.firstTokenAt ? Math.round(this.firstTokenAt - this.arrival) : null, total_ms: Math.round(now - this.arrival), status,
      ...(status === "error" ? { error: (error as Error)?.message ?? String(error) } : {}),
    });
  }
}
