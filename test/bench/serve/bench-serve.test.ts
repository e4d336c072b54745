// `lora-serve bench serve` end to end on the CPU twin: 200 synthetic adapters on disk, power-law
// popularity, a two-point rate sweep through 4 device slots; the JSON, the table, the HTML page in
// headless Chromium; the same fields from --url against another lora-serve; failures counted.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeSyntheticAdapters } from "../../../src/bench/serve/synthetic-adapters.ts";
import { startLoraServe, type Target } from "../../../src/bench/serve/target.ts";
import type { SweepReport } from "../../../src/bench/serve/sweep.ts";
import { readModelConfig } from "../../../src/model/config.ts";
import { chromiumMissing, renderedDom } from "../../helpers/chromium.ts";
import { modelDir } from "../../helpers/fixtures.ts";

const MAIN = join(import.meta.dir, "../../../src/cli/main.ts");
const tmp = mkdtempSync(join(tmpdir(), "lora-serve-bench-serve-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function benchServe(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn([process.execPath, MAIN, "bench", "serve", ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

const POINT_FIELDS = [
  "adapters", "rate", "concurrency", "requests", "completed", "errors", "errorMessages", "durationS", "requestsPerS", "outputTokensPerS",
  "totalTokensPerS", "ttft", "tpot", "e2e", "sloAttainment", "sloTtft", "fairness", "adaptersUsed", "tiers", "prefixCache", "ttftSamples",
].sort();

function expectCompletePoint(p: SweepReport["points"][number], n: number) {
  expect(Object.keys(p).sort()).toEqual(POINT_FIELDS);
  expect(p.requests).toBe(n);
  expect(p.completed).toBe(n); // no request lost
  expect(p.errors).toBe(0);
  for (const s of [p.ttft, p.tpot, p.e2e]) {
    expect(s.p50).toBeGreaterThan(0);
    expect(s.p50).toBeLessThanOrEqual(s.p90);
    expect(s.p90).toBeLessThanOrEqual(s.p99);
  }
  expect(p.ttft.p99).toBeLessThanOrEqual(p.e2e.p99);
  expect(p.ttftSamples).toHaveLength(n);
  expect(p.sloAttainment).toBeGreaterThanOrEqual(0);
  expect(p.sloAttainment).toBeLessThanOrEqual(1);
  expect(p.fairness).toBeGreaterThan(0);
  expect(p.fairness).toBeLessThanOrEqual(1);
  expect(p.outputTokensPerS).toBeCloseTo((n * 8) / p.durationS, 6); // every request gave its 8 tokens
}

describe("bench serve on the CPU twin", () => {
  let report: SweepReport;
  let run: Awaited<ReturnType<typeof benchServe>>;
  const out = join(tmp, "sweep.json"), html = join(tmp, "sweep.html");

  beforeAll(async () => {
    run = await benchServe(["--adapters", "200", "--zipf", "1.0", "--rate", "20,60", "--num-prompts", "60", "--max-loras", "4",
      "--max-cpu-loras", "16", "--input-len", "8-24", "--output-len", "8", "--out", out, "--report", html]);
    report = JSON.parse(await Bun.file(out).text());
  }, 240_000);

  test("every point holds every field, and no request is lost", () => {
    expect(run.code).toBe(0);
    expect(report.swept).toBe("rate");
    expect(report.points.map((p) => [p.adapters, p.rate, p.concurrency])).toEqual([[200, 20, null], [200, 60, null]]);
    for (const p of report.points) expectCompletePoint(p, 60);
  });

  test("power-law popularity through 4 slots: adapters load, evict and hit in both tiers", () => {
    for (const p of report.points) {
      expect(p.adaptersUsed).toBeGreaterThan(4);
      expect(p.adaptersUsed).toBeLessThan(60); // zipf 1.0 over 200 repeats the popular ones
      const { gpu, cpu } = p.tiers!;
      expect(gpu.loads).toBeGreaterThan(4);
      expect(gpu.evictions).toBeGreaterThan(0); // more adapters than slots
      expect(gpu.hits).toBeGreaterThan(0);
      expect(gpu.loads + gpu.hits).toBe(60); // each request found its adapter in a slot, or loaded it
      expect(gpu.hitRate).toBeCloseTo(gpu.hits / 60, 12);
      expect(cpu.loads).toBeGreaterThanOrEqual(p.adaptersUsed); // each used adapter read from disk at least once
      expect(cpu.hits + cpu.loads).toBeLessThanOrEqual(60); // a request hits or loads (or joins a load in flight)
      expect(cpu.evictions).toBeGreaterThan(0); // more used than --max-cpu-loras 16 hold
      // what is left in host memory: the 16 allowed, more only while requests held them
      expect(cpu.loads - cpu.evictions).toBeGreaterThanOrEqual(16);
    }
  });

  test("the table names every point", () => {
    const rows = run.stdout.split("\n").filter((l) => /^\s+200\s+(20|60)\s/.test(l));
    expect(rows).toHaveLength(2);
  });

  test("the HTML page renders its three charts offline in headless Chromium", async () => {
    const why = chromiumMissing();
    if (why) return void console.log(`skipped: ${why}`);
    const dom = await renderedDom(html);
    for (const id of ["throughput", "ttft", "cdf"]) {
      const m = new RegExp(`<div id="${id}" class="chart" data-drawn="1">(.*?)</div></div>`, "s").exec(dom);
      expect(m).not.toBeNull();
      expect(dom).toContain(`id="${id}" class="chart" data-drawn="1"><div class="uplot`);
    }
    expect((dom.match(/<canvas/g) ?? []).length).toBe(3);
    expect(dom).toContain("200 adapters, rate 60"); // a CDF series label
  }, 60_000);
});

test("--synthetic: a model shape with random weights (the demo's tokenizer) and adapters written for that shape", async () => {
  const shape = join(tmp, "shape.json");
  writeFileSync(shape, JSON.stringify({
    architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_act: "silu", rms_norm_eps: 1e-5, vocab_size: 32000, hidden_size: 64,
    intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256,
  }));
  const out = join(tmp, "synthetic.json");
  const r = await benchServe(["--synthetic", shape, "--adapters", "3", "--concurrency", "2", "--num-prompts", "6", "--output-len", "4", "--input-len", "8", "--out", out]);
  expect(r.code).toBe(0);
  const p = (JSON.parse(await Bun.file(out).text()) as SweepReport).points[0];
  expect(p.completed).toBe(6);
  expect(p.tiers!.cpu.loads).toBeGreaterThan(0); // hidden size 64 adapters loaded against the 64-wide shape
}, 60_000);

test("--shared-prefix: a chat workload's system prompt, computed once per adapter, reported as prefix-cache hits", async () => {
  const out = join(tmp, "prefix.json");
  const args = ["--stub-model", "--adapters", "2", "--concurrency", "1", "--num-prompts", "12", "--output-len", "4", "--input-len", "8", "--out", out];
  const r = await benchServe([...args, "--shared-prefix", "200"]);
  expect(r.code).toBe(0);
  const p = (JSON.parse(await Bun.file(out).text()) as SweepReport).points[0];
  // one request per adapter computes the ~200-token prefix; the other ten find all its full blocks
  expect(p.prefixCache!.hitTokens).toBeGreaterThanOrEqual(10 * 192);
  expect(p.prefixCache!.hitRate).toBeGreaterThan(0.7);
  expect(p.prefixCache!.savedTokensPerS).toBeGreaterThan(0);
  expect(r.stdout).toContain("prefix hit");
  const none = await benchServe(args);
  expect((JSON.parse(await Bun.file(out).text()) as SweepReport).points[0].prefixCache!.hitTokens).toBe(0);
  expect(none.code).toBe(0);
}, 60_000);

describe("bench serve --url", () => {
  let target: Target;
  beforeAll(async () => {
    const dir = join(tmp, "url-adapters");
    writeSyntheticAdapters(dir, { config: readModelConfig(modelDir("tiny-llama2")), count: 6, ranks: [8], moduleSets: ["qkvo"] });
    target = await startLoraServe(["--adapters", dir, "--max-loras", "2"]);
  }, 60_000);
  afterAll(() => target?.stop());

  test("against another lora-serve: the same fields", async () => {
    const out = join(tmp, "url.json");
    const r = await benchServe(["--url", target.url, "--adapters", "6", "--concurrency", "4", "--num-prompts", "24", "--output-len", "8", "--input-len", "10", "--out", out]);
    expect(r.code).toBe(0);
    const report: SweepReport = JSON.parse(await Bun.file(out).text());
    expect(report.target).toBe(target.url);
    expect(report.swept).toBe("concurrency");
    expectCompletePoint(report.points[0], 24);
    expect(report.points[0].tiers!.gpu.loads).toBeGreaterThan(0);
  }, 120_000);

  test("failures are counted and shown, and the run exits 1", async () => {
    // a prompt over tiny-llama2's 512-token context: 400 from the target
    const prompts = join(tmp, "prompts.jsonl");
    writeFileSync(prompts, `${JSON.stringify({ prompt: "word ".repeat(600), max_tokens: 4 })}\n${JSON.stringify({ prompt: "hello", max_tokens: 4 })}\n`);
    const out = join(tmp, "errors.json");
    const r = await benchServe(["--url", target.url, "--adapters", "2", "--concurrency", "2", "--num-prompts", "20", "--prompts", prompts, "--seed", "4", "--out", out]);
    expect(r.code).toBe(1);
    const p = (JSON.parse(await Bun.file(out).text()) as SweepReport).points[0];
    expect(p.errors).toBeGreaterThan(0);
    expect(p.completed).toBeGreaterThan(0);
    expect(p.errors + p.completed).toBe(20);
    const [message, count] = Object.entries(p.errorMessages)[0];
    expect(message).toStartWith("HTTP 400");
    expect(count).toBe(p.errors);
    expect(r.stdout).toContain(`${p.errors} x HTTP 400`);
    expect(p.sloAttainment).toBeLessThanOrEqual(p.completed / 20);
  }, 120_000);

  test("a dead URL ends at once with a clear message", async () => {
    const t0 = performance.now();
    const r = await benchServe(["--url", "http://127.0.0.1:9", "--rate", "1", "--num-prompts", "1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("cannot reach http://127.0.0.1:9");
    expect(performance.now() - t0).toBeLessThan(15_000);
  }, 30_000);
});
