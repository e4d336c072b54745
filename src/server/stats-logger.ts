// A stats line per model every few seconds while it is busy, as vLLM logs one: prompt and
// generation throughput over the interval, running and waiting requests, KV cache use, adapters
// per tier. An idle server stays quiet.
import type { EngineService } from "../engine/engine-service.ts";
import { logFields } from "../log.ts";

/** Starts the periodic line (`intervalSeconds` 0: never); returns a stop function. */
export function startStatsLogger(services: EngineService[], intervalSeconds: number): () => void {
  if (intervalSeconds <= 0) return () => {};
  const last = new Map(services.map((s) => [s, { prompt: s.telemetry.promptTokens, generated: s.telemetry.generatedTokens }]));
  const timer = setInterval(() => {
    for (const s of services) {
      const before = last.get(s)!;
      const now = { prompt: s.telemetry.promptTokens, generated: s.telemetry.generatedTokens };
      last.set(s, now);
      const snap = s.snapshot();
      if (now.prompt === before.prompt && now.generated === before.generated && s.inFlight === 0) continue;
      const kvTotal = snap.kvBlocksUsed + snap.kvBlocksFree;
      logFields("stats", {
        model: snap.model,
        prompt_tokens_per_s: round1((now.prompt - before.prompt) / intervalSeconds),
        generation_tokens_per_s: round1((now.generated - before.generated) / intervalSeconds),
        running: snap.running, waiting: snap.waiting,
        kv_cache_usage_pct: round1((100 * snap.kvBlocksUsed) / Math.max(1, kvTotal)),
        adapters_gpu: snap.adaptersGpu, adapters_cpu: snap.adaptersCpu, adapters_disk: snap.adaptersDisk,
      });
    }
  }, intervalSeconds * 1000);
  timer.unref();
  return () => clearInterval(timer);
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
