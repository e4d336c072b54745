// The engine's and the adapter tiers' events as Prometheus series, and the gauges read at scrape
// time; the events that concern requests (a token, a failure) go to the service.
import type { LoadedModel } from "./load-model.ts";
import type { EngineSnapshot, Metrics } from "./metrics.ts";
import type { Sequence } from "./sequence.ts";

export interface ServiceHooks {
  token(seq: Sequence): void;
  scheduled(seq: Sequence): void;
  failed(seq: Sequence, error: unknown): void;
  /** Requests waiting (adapter loads included). */
  waiting(): number;
}

/** Wires the events to the metrics; returns what the engine reports at scrape time (also read by the stats line). */
export function wireEngine(loaded: LoadedModel, m: Metrics, model: string, hooks: ServiceHooks): () => EngineSnapshot {
  const { engine, adapters } = loaded;
  engine.events = {
    token: hooks.token,
    slotLoaded: (_, replaced, seconds) => {
      m.adapterLoads.inc({ model, tier: "gpu" });
      m.adapterLoadSeconds.observe(seconds, { model, tier: "gpu" });
      if (replaced !== null) m.adapterEvictions.inc({ model, tier: "gpu" });
    },
    scheduled: hooks.scheduled,
    slotHit: () => m.adapterHits.inc({ model, tier: "gpu" }),
    preempted: () => m.preemptions.inc({ model }),
    failed: hooks.failed,
  };
  adapters.events = {
    loaded: (_, seconds) => {
      m.adapterLoads.inc({ model, tier: "cpu" });
      m.adapterLoadSeconds.observe(seconds, { model, tier: "cpu" });
    },
    evicted: () => m.adapterEvictions.inc({ model, tier: "cpu" }),
    hit: () => m.adapterHits.inc({ model, tier: "cpu" }),
  };
  const snapshot = (): EngineSnapshot => ({
    model,
    waiting: hooks.waiting(),
    running: engine.numRunning,
    kvBlocksUsed: engine.blocks.numBlocks - engine.blocks.freeBlocks,
    kvBlocksFree: engine.blocks.freeBlocks,
    blockSize: engine.blocks.blockSize,
    maxLoras: engine.slots.numSlots,
    adaptersGpu: engine.slots.occupied,
    adaptersCpu: adapters.hostCount,
    adaptersDisk: adapters.names().length,
    runningAdapters: engine.runningAdapters,
    prefixCaching: engine.blocks.caching,
    prefixQueriedTokens: engine.blocks.queriedTokens,
    prefixHitTokens: engine.blocks.hitTokens,
    waitingAdapters: engine.waitingAdapters,
    grammar: { ...loaded.grammar.stats },
    adapters: adapters.names().map((name) => ({
      name, pinned: adapters.isPinned(name),
      tier: engine.slots.slotOfAdapter(name) !== undefined ? "gpu" : adapters.isLoaded(name) ? "cpu" : "disk",
    })),
  });
  m.addEngine(snapshot);
  return snapshot;
}
