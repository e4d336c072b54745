// /metrics as routers built for vLLM read it (the Gateway API Inference Extension): vLLM's names,
// types and labels, parsed by an independent Prometheus text-format parser; while a stream for
// adapter `es` runs, vllm:lora_requests_info names it among the running adapters.
import { afterAll, beforeAll, expect, test } from "bun:test";
import parsePrometheusTextFormat, { type MetricFamily } from "parse-prometheus-text-format";
import { startFixtureServer, type FixtureServer } from "./server-fixture.ts";

let s: FixtureServer;
beforeAll(async () => {
  s = await startFixtureServer({ load: { maxLoras: 2 } });
});
afterAll(() => s.close());

let lastText = "";
async function scrape(): Promise<Map<string, MetricFamily>> {
  const r = await fetch(`${s.url}/metrics`);
  expect(r.headers.get("content-type")).toContain("text/plain; version=0.0.4");
  lastText = await r.text();
  return new Map(parsePrometheusTextFormat(lastText).map((f) => [f.name, f]));
}

// the parser keeps a labelled histogram's buckets but not its _count: read that sample line itself
const histogramCount = (name: string, labels: string): number =>
  Number(new RegExp(`^${name.replace(/[:.]/g, "\\$&")}_count\\{${labels}\\} (\\S+)$`, "m").exec(lastText)?.[1]);

const EXPECTED_TYPES: Record<string, MetricFamily["type"]> = {
  "vllm:num_requests_waiting": "GAUGE",
  "vllm:num_requests_running": "GAUGE",
  "vllm:kv_cache_usage_perc": "GAUGE",
  "vllm:cache_config_info": "GAUGE",
  "vllm:lora_requests_info": "GAUGE",
  "vllm:time_to_first_token_seconds": "HISTOGRAM",
  "vllm:e2e_request_latency_seconds": "HISTOGRAM",
  "vllm:request_queue_time_seconds": "HISTOGRAM",
  lora_serve_adapter_residency: "GAUGE",
  lora_serve_adapter_load_seconds: "HISTOGRAM",
};

const only = (f: MetricFamily | undefined) => {
  expect(f?.metrics.length).toBe(1);
  return f!.metrics[0];
};

test("while a stream for es runs: running counts it, lora_requests_info names it, es is resident on the GPU tier", async () => {
  const stream = await s.post("/v1/completions", { model: "es", prompt: "Hello", max_tokens: 300, ignore_eos: true, stream: true });
  const reader = stream.body!.getReader();
  await reader.read(); // running now
  const m = await scrape();
  for (const [name, type] of Object.entries(EXPECTED_TYPES)) expect({ name, type: m.get(name)?.type }).toEqual({ name, type });

  expect(only(m.get("vllm:num_requests_running"))).toMatchObject({ labels: { model_name: "tiny-llama2" }, value: "1" });
  expect(only(m.get("vllm:num_requests_waiting")).value).toBe("0");
  const usage = Number(only(m.get("vllm:kv_cache_usage_perc")).value);
  expect(usage).toBeGreaterThan(0);
  expect(usage).toBeLessThan(1);
  const info = only(m.get("vllm:lora_requests_info"));
  expect(info.labels).toEqual({ model_name: "tiny-llama2", max_lora: "2", running_lora_adapters: "es", waiting_lora_adapters: "" });
  expect(Math.abs(Number(info.value) - Date.now() / 1000)).toBeLessThan(5); // the time of the update, as vLLM sets it
  const cache = only(m.get("vllm:cache_config_info"));
  expect(cache.value).toBe("1");
  expect(cache.labels).toMatchObject({ block_size: "16", num_gpu_blocks: String(s.service.model.engine.blocks.numBlocks) });
  const residency = m.get("lora_serve_adapter_residency")!.metrics.map((x) => x.labels!);
  expect(residency.find((l) => l.adapter === "es")).toEqual({ model: "tiny-llama2", adapter: "es", tier: "gpu", pinned: "false" });
  expect(residency.find((l) => l.adapter === "rp")).toMatchObject({ tier: "disk" });

  while (!(await reader.read()).done) { /* to its end */ }
  const after = await scrape();
  expect(only(after.get("vllm:lora_requests_info")).labels!.running_lora_adapters).toBe("");
  for (const name of ["vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds"]) {
    expect({ name, count: histogramCount(name, 'model_name="tiny-llama2"') }).toEqual({ name, count: 1 });
  }
  for (const tier of ["cpu", "gpu"]) {
    expect({ tier, loads: histogramCount("lora_serve_adapter_load_seconds", `model="tiny-llama2",tier="${tier}"`) }).toEqual({ tier, loads: 1 });
  }
}, 60_000);
