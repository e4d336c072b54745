// The adapter-tier counters of a lora-serve target, read from its Prometheus /metrics before and
// after a point: loads, evictions and hit rate per tier over the point alone.

export interface TierCounters {
  loads: number;
  evictions: number;
  hits: number;
  /** hits / (hits + loads): requests that found their adapter already in this tier. */
  hitRate: number;
}

type Samples = { name: string; labels: Record<string, string>; value: number }[];

/** Sample lines of the Prometheus text format (comments and blank lines skipped). */
export function parsePrometheus(text: string): Samples {
  const out: Samples = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The tier counters summed over models, or null where the target exports none (not a lora-serve). */
/** The target's /metrics text, or null where it has none. */
async function metricsText(url: string): Promise<string | null> {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
    return res.ok ? await res.text() : null;
  } catch {
    return null;
  }
}

export async function scrapeTiers(url: string): Promise<Record<string, Omit<TierCounters, "hitRate">> | null> {
  const text = await metricsText(url);
  if (text === null) return null;
  const samples = parsePrometheus(text);
  const out: Record<string, Omit<TierCounters, "hitRate">> = {};
  const field = { lora_serve_adapter_loads_total: "loads", lora_serve_adapter_evictions_total: "evictions", lora_serve_adapter_hits_total: "hits" } as const;
  // a lora-serve declares the counters even before any sample
  const found = /^# TYPE lora_serve_adapter_loads_total counter$/m.test(text);
  for (const s of samples) {
    const key = field[s.name as keyof typeof field];
    if (!key || !s.labels.tier) continue;
    const tier = (out[s.labels.tier] ??= { loads: 0, evictions: 0, hits: 0 });
    tier[key] += s.value;
  }
  return found ? out : null;
}

export function tierDelta(before: Awaited<ReturnType<typeof scrapeTiers>>, after: Awaited<ReturnType<typeof scrapeTiers>>): Record<string, TierCounters> | null {
  if (!before || !after) return null;
  const out: Record<string, TierCounters> = {};
  for (const tier of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const b = before[tier] ?? { loads: 0, evictions: 0, hits: 0 }, a = after[tier] ?? { loads: 0, evictions: 0, hits: 0 };
    const loads = a.loads - b.loads, evictions = a.evictions - b.evictions, hits = a.hits - b.hits;
    out[tier] = { loads, evictions, hits, hitRate: hits + loads > 0 ? hits / (hits + loads) : NaN };
  }
  return out;
}

export interface PrefixCacheFigures {
  queriedTokens: number;
  hitTokens: number;
  hitRate: number;
  /** Prompt tokens not recomputed, per second of the point. */
  savedTokensPerS: number;
}

/** vLLM's prefix-cache counters (tokens queried, tokens found), summed over models; null where absent. */
export async function scrapePrefixCache(url: string): Promise<{ queried: number; hits: number } | null> {
  const text = await metricsText(url);
  if (text === null || !/^# TYPE vllm:prefix_cache_queries(_total)? counter$/m.test(text)) return null;
  const sum = (name: string) => parsePrometheus(text).filter((s) => s.name === name).reduce((n, s) => n + s.value, 0);
  return { queried: sum("vllm:prefix_cache_queries_total"), hits: sum("vllm:prefix_cache_hits_total") };
}

export function prefixDelta(before: { queried: number; hits: number } | null, after: { queried: number; hits: number } | null, seconds: number): PrefixCacheFigures | null {
  if (!before || !after) return null;
  const queriedTokens = after.queried - before.queried, hitTokens = after.hits - before.hits;
  return { queriedTokens, hitTokens, hitRate: queriedTokens > 0 ? hitTokens / queriedTokens : NaN, savedTokensPerS: hitTokens / seconds };
}
