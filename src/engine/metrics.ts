// Prometheus metrics: labelled counters, gauges read at scrape time, and histograms; rendered in
// the text exposition format.

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const parts = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return parts.map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`).join(",");
}

function line(name: string, key: string, value: number): string {
  return `${name}${key ? `{${key}}` : ""} ${Number.isFinite(value) ? value : value > 0 ? "+Inf" : "NaN"}`;
}

interface Metric {
  render(): string[];
}

export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    this.add(labelKey(labels), by);
  }
  /** One label set's series, its key computed once (for increments on every token). */
  series(labels: Labels): { inc(by?: number): void } {
    const key = labelKey(labels);
    return { inc: (by = 1) => this.add(key, by) };
  }
  private add(key: string, by: number): void {
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) out.push(line(this.name, "", 0));
    for (const [key, v] of this.values) out.push(line(this.name, key, v));
    return out;
  }
}

export class Gauge implements Metric {
  constructor(readonly name: string, readonly help: string, private readonly read: () => [Labels, number][]) {}
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [labels, v] of this.read()) out.push(line(this.name, labelKey(labels), v));
    return out;
  }
}

interface HistogramSeries {
  /** Observations in each bucket alone (cumulated when rendered); the last is +Inf's. */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram implements Metric {
  private readonly all = new Map<string, HistogramSeries>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {}
  observe(value: number, labels: Labels = {}): void {
    this.record(this.seriesOf(labelKey(labels)), value);
  }
  /** One label set's series, found once (for observations on every token). */
  series(labels: Labels): { observe(value: number): void } {
    const s = this.seriesOf(labelKey(labels));
    return { observe: (value) => this.record(s, value) };
  }
  count(labels: Labels = {}): number {
    return this.all.get(labelKey(labels))?.count ?? 0;
  }
  private seriesOf(key: string): HistogramSeries {
    let s = this.all.get(key);
    if (!s) this.all.set(key, (s = { counts: new Array(this.buckets.length + 1).fill(0), sum: 0, count: 0 }));
    return s;
  }
  private record(s: HistogramSeries, value: number): void {
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]) i++;
    s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [key, s] of this.all) {
      const prefix = key ? `${key},` : "";
      let cumulative = 0;
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket{${prefix}le="${b}"} ${(cumulative += s.counts[i])}`));
      out.push(`${this.name}_bucket{${prefix}le="+Inf"} ${s.count}`);
      out.push(line(`${this.name}_sum`, key, s.sum), line(`${this.name}_count`, key, s.count));
    }
    return out;
  }
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What each model's engine reports at scrape time. */
export interface EngineSnapshot {
  model: string;
  waiting: number;
  running: number;
  kvBlocksUsed: number;
  kvBlocksFree: number;
  adaptersGpu: number;
  adaptersCpu: number;
  adaptersDisk: number;
}

/** Every metric the server exports; one registry per server. */
export class Metrics {
  private readonly all: Metric[] = [];
  private readonly engines: (() => EngineSnapshot)[] = [];
  readonly requests = this.add(new Counter("lora_serve_requests_total", "Finished requests by model, adapter and finish reason"));
  readonly promptTokens = this.add(new Counter("lora_serve_prompt_tokens_total", "Prompt tokens by model and adapter"));
  readonly generationTokens = this.add(new Counter("lora_serve_generation_tokens_total", "Generated tokens by model and adapter"));
  readonly timeToFirstToken = this.add(new Histogram("lora_serve_time_to_first_token_seconds", "Time from arrival to the first token", LATENCY_BUCKETS));
  readonly timePerOutputToken = this.add(new Histogram("lora_serve_time_per_output_token_seconds", "Time between output tokens", LATENCY_BUCKETS));
  readonly adapterLoads = this.add(new Counter("lora_serve_adapter_loads_total", "Adapter loads by model and tier (host: from disk, gpu: into a slot)"));
  readonly adapterEvictions = this.add(new Counter("lora_serve_adapter_evictions_total", "Adapter evictions by model and tier"));
  readonly adapterHits = this.add(new Counter("lora_serve_adapter_hits_total", "Requests whose adapter was already resident, by model and tier"));
  readonly preemptions = this.add(new Counter("lora_serve_preemptions_total", "Sequences preempted (KV blocks freed, recomputed later) by model"));

  constructor() {
    const gauge = (name: string, help: string, pick: (s: EngineSnapshot) => [Labels, number][]) =>
      this.add(new Gauge(name, help, () => this.engines.flatMap((read) => pick(read()))));
    gauge("lora_serve_queue_length", "Requests waiting to run (adapter loading included)", (s) => [[{ model: s.model }, s.waiting]]);
    gauge("lora_serve_running_sequences", "Sequences in the running batch", (s) => [[{ model: s.model }, s.running]]);
    gauge("lora_serve_kv_blocks", "KV cache blocks by state", (s) => [[{ model: s.model, state: "used" }, s.kvBlocksUsed], [{ model: s.model, state: "free" }, s.kvBlocksFree]]);
    gauge("lora_serve_adapters", "Adapters per tier (gpu: in a device slot; cpu: in host memory; disk: registered)", (s) => [
      [{ model: s.model, tier: "gpu" }, s.adaptersGpu], [{ model: s.model, tier: "cpu" }, s.adaptersCpu], [{ model: s.model, tier: "disk" }, s.adaptersDisk],
    ]);
  }

  /** Adds a model's engine to the gauges. */
  addEngine(read: () => EngineSnapshot): void {
    this.engines.push(read);
  }

  add<M extends Metric>(metric: M): M {
    this.all.push(metric);
    return metric;
  }

  render(): string {
    return this.all.flatMap((m) => m.render()).join("\n") + "\n";
  }
}
