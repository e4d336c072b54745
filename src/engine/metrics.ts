// Every metric the server exports, through prom-client: lora-serve's own series, and the vLLM names,
// types and labels that routers built for vLLM read (the Kubernetes Gateway API Inference
// Extension's model-server protocol: queue, running, KV use, LoRA adapters, latencies).
import { Counter, Gauge, Registry } from "prom-client";
import { CounterMetric, HistogramMetric, type Labels } from "./metric-types.ts";

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// vLLM's own buckets, so dashboards built for it read these histograms unchanged
const VLLM_TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const VLLM_REQUEST_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
const ADAPTER_LOAD_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export type AdapterTier = "gpu" | "cpu" | "disk";

/** What each model's engine reports at scrape time. */
export interface EngineSnapshot {
  model: string;
  waiting: number;
  running: number;
  kvBlocksUsed: number;
  kvBlocksFree: number;
  blockSize: number;
  maxLoras: number;
  adaptersGpu: number;
  adaptersCpu: number;
  adaptersDisk: number;
  runningAdapters: string[];
  prefixCaching: boolean;
  /** Prompt tokens looked up in the prefix cache since start, and those found there. */
  prefixQueriedTokens: number;
  prefixHitTokens: number;
  waitingAdapters: string[];
  /** Structured output since start: grammars compiled, masks made, what the loop waited for (µs). */
  grammar: { compiles: number; compileUs: number; steps: number; maskUs: number; waitedUs: number; deferred: number };
  /** Every registered adapter, at the highest tier it has reached. */
  adapters: { name: string; tier: AdapterTier; pinned: boolean }[];
}

export class Metrics {
  readonly registry = new Registry();
  private readonly engines: (() => EngineSnapshot)[] = [];
  private readonly counter = (name: string, help: string, labels: string[]) => new CounterMetric(this.registry, name, help, labels);
  private readonly histogram = (name: string, help: string, labels: string[], buckets: number[]) => new HistogramMetric(this.registry, name, help, labels, buckets);

  readonly requests = this.counter("lora_serve_requests_total", "Finished requests by model, adapter and finish reason", ["model", "adapter", "finish_reason"]);
  readonly promptTokens = this.counter("lora_serve_prompt_tokens_total", "Prompt tokens by model and adapter", ["model", "adapter"]);
  readonly generationTokens = this.counter("lora_serve_generation_tokens_total", "Generated tokens by model and adapter", ["model", "adapter"]);
  readonly timeToFirstToken = this.histogram("lora_serve_time_to_first_token_seconds", "Time from arrival to the first token", ["model"], LATENCY_BUCKETS);
  readonly timePerOutputToken = this.histogram("lora_serve_time_per_output_token_seconds", "Time between output tokens", ["model"], LATENCY_BUCKETS);
  readonly adapterLoads = this.counter("lora_serve_adapter_loads_total", "Adapter loads by model and tier (cpu: from disk, gpu: into a slot)", ["model", "tier"]);
  readonly adapterEvictions = this.counter("lora_serve_adapter_evictions_total", "Adapter evictions by model and tier", ["model", "tier"]);
  readonly adapterHits = this.counter("lora_serve_adapter_hits_total", "Requests whose adapter was already resident, by model and tier", ["model", "tier"]);
  readonly adapterLoadSeconds = this.histogram("lora_serve_adapter_load_seconds", "Time to load an adapter into a tier (cpu: read from disk, gpu: copied into a slot)", ["model", "tier"], ADAPTER_LOAD_BUCKETS);
  readonly preemptions = this.counter("lora_serve_preemptions_total", "Sequences preempted (KV blocks freed, recomputed later) by model", ["model"]);
  readonly vllmTimeToFirstToken = this.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ["model_name"], VLLM_TTFT_BUCKETS);
  readonly vllmE2eLatency = this.histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", ["model_name"], VLLM_REQUEST_BUCKETS);
  readonly vllmQueueTime = this.histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", ["model_name"], VLLM_REQUEST_BUCKETS);

  constructor() {
    const gauge = (name: string, help: string, labelNames: string[], pick: (s: EngineSnapshot) => [Labels, number][]) => {
      const read = () => this.engines.flatMap((snapshot) => pick(snapshot()));
      return new Gauge({ name, help, labelNames, registers: [this.registry], collect() {
        this.reset();
        for (const [labels, value] of read()) this.set(labels, value);
      } });
    };
    gauge("lora_serve_queue_length", "Requests waiting to run (adapter loading included)", ["model"], (s) => [[{ model: s.model }, s.waiting]]);
    gauge("lora_serve_running_sequences", "Sequences in the running batch", ["model"], (s) => [[{ model: s.model }, s.running]]);
    gauge("lora_serve_kv_blocks", "KV cache blocks by state", ["model", "state"], (s) => [[{ model: s.model, state: "used" }, s.kvBlocksUsed], [{ model: s.model, state: "free" }, s.kvBlocksFree]]);
    gauge("lora_serve_adapters", "Adapters per tier (gpu: in a device slot; cpu: in host memory; disk: registered)", ["model", "tier"], (s) => [
      [{ model: s.model, tier: "gpu" }, s.adaptersGpu], [{ model: s.model, tier: "cpu" }, s.adaptersCpu], [{ model: s.model, tier: "disk" }, s.adaptersDisk],
    ]);
    gauge("lora_serve_adapter_residency", "1 for each registered adapter at the highest tier it is in (gpu, cpu or disk), with whether it is pinned",
      ["model", "adapter", "tier", "pinned"], (s) => s.adapters.map((a) => [{ model: s.model, adapter: a.name, tier: a.tier, pinned: String(a.pinned) }, 1]));
    gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", ["model_name"], (s) => [[{ model_name: s.model }, s.waiting]]);
    gauge("vllm:num_requests_running", "Number of requests in model execution batches.", ["model_name"], (s) => [[{ model_name: s.model }, s.running]]);
    gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", ["model_name"], (s) =>
      [[{ model_name: s.model }, s.kvBlocksUsed / Math.max(1, s.kvBlocksUsed + s.kvBlocksFree)]]);
    gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", ["model_name", "block_size", "num_gpu_blocks", "num_cpu_blocks", "enable_prefix_caching"], (s) =>
      [[{ model_name: s.model, block_size: String(s.blockSize), num_gpu_blocks: String(s.kvBlocksUsed + s.kvBlocksFree), num_cpu_blocks: "0", enable_prefix_caching: s.prefixCaching ? "True" : "False" }, 1]]);
    this.scrapedCounter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.", (s) => s.prefixQueriedTokens);
    this.scrapedCounter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", (s) => s.prefixHitTokens);
    const grammarCounter = (name: string, help: string, pick: (g: EngineSnapshot["grammar"]) => number) => this.scrapedCounter(name, help, (s) => pick(s.grammar), "model");
    grammarCounter("lora_serve_grammar_compiles_total", "Structured-output grammars compiled (cache misses)", (g) => g.compiles);
    grammarCounter("lora_serve_grammar_compile_seconds_total", "Time compiling structured-output grammars, on the grammar thread", (g) => g.compileUs / 1e6);
    grammarCounter("lora_serve_grammar_mask_seconds_total", "Time making next-token masks on the grammar thread (overlapping the forward pass)", (g) => g.maskUs / 1e6);
    grammarCounter("lora_serve_grammar_mask_wait_seconds_total", "Time the step loop waited for masks after its forward pass", (g) => g.waitedUs / 1e6);
    grammarCounter("lora_serve_grammar_deferred_steps_total", "Steps whose constrained rows waited a step for late masks", (g) => g.deferred);
    // vLLM's convention: the value is the time of the update; routers read the newest series
    gauge("vllm:lora_requests_info", "Running stats on lora requests.", ["model_name", "max_lora", "running_lora_adapters", "waiting_lora_adapters"], (s) =>
      [[{ model_name: s.model, max_lora: String(s.maxLoras), running_lora_adapters: s.runningAdapters.join(","), waiting_lora_adapters: s.waitingAdapters.join(",") }, Date.now() / 1000]]);
  }

  /** Totals the engine keeps, exported as counters at scrape time. */
  private scrapedCounter(name: string, help: string, pick: (s: EngineSnapshot) => number, label = "model_name"): void {
    const read = () => this.engines.map((snapshot) => snapshot());
    new Counter({ name, help, labelNames: [label], registers: [this.registry], collect() {
      this.reset();
      for (const s of read()) this.inc({ [label]: s.model }, pick(s));
    } });
  }

  /** Adds a model's engine to the gauges. */
  addEngine(read: () => EngineSnapshot): void {
    this.engines.push(read);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
