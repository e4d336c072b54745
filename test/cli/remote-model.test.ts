// `--model org/name` (LMI's OPTION_MODEL_ID) fetched from a Hub-layout server on loopback
// (HF_ENDPOINT) into HF_HUB_CACHE, then served: the fixture's output. A download cut short resumes
// from where it stopped, in the same run and in the next one.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLoraServe } from "../../src/bench/serve/target.ts";
import { comparableSteps, modelDir, readReference, type ReferenceCase } from "../helpers/fixtures.ts";
import { startHubServer, type HubServer } from "../helpers/hub-server.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-hub-model-"));
const repo = join(tmp, "repo");
let hub: HubServer;
let base: ReferenceCase;
const WEIGHTS = "model.safetensors";

beforeAll(async () => {
  mkdirSync(repo);
  for (const f of ["config.json", "generation_config.json", WEIGHTS, "tokenizer.json", "tokenizer_config.json"]) {
    cpSync(join(modelDir("tiny-llama2"), f), join(repo, f), { dereference: true });
  }
  hub = startHubServer({ "acme/tiny-llama2": repo });
  base = (await readReference("tiny-llama2")).cases.find((c) => c.adapter === null && c.prompt === "plain")!;
});
afterAll(() => {
  hub.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const env = (cache: string) => ({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });

async function expectFixture(url: string) {
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: "acme/tiny-llama2", prompt: base.prompt_ids, max_tokens: base.greedy_ids.length, temperature: 0, ignore_eos: true, return_token_ids: true }),
  });
  expect(r.status).toBe(200);
  const n = comparableSteps(base.greedy_steps, 2e-4);
  expect(((await r.json()) as any).choices[0].token_ids.slice(0, n)).toEqual(base.greedy_ids.slice(0, n));
}

test("--model acme/tiny-llama2: downloaded into HF_HUB_CACHE's layout, served as the fixture", async () => {
  const cache = join(tmp, "cache-1");
  const lines: string[] = [];
  const target = await startLoraServe(["--model", "acme/tiny-llama2"], { env: env(cache), log: (l) => lines.push(l) });
  try {
    expect(target.models.map((m) => m.id)).toContain("acme/tiny-llama2");
    await expectFixture(target.url);
    expect(existsSync(join(cache, "models--acme--tiny-llama2", "refs", "main"))).toBe(true);
    expect(lines.join("\n")).toContain(`acme/tiny-llama2: ${WEIGHTS}`); // a log line per file off a terminal
  } finally {
    await target.stop();
  }
}, 60_000);

test("an interrupted download resumes: within a run, and in the next run from the partial file", async () => {
  const cache = join(tmp, "cache-2");
  const size = statSync(join(repo, WEIGHTS)).size;
  const cut = Math.floor(size / 8);
  // three cuts in a row exhaust the first run's attempts; it stops, keeping what arrived
  hub.interrupt(WEIGHTS, cut, 3);
  await expect(startLoraServe(["--model", "acme/tiny-llama2"], { env: env(cache) })).rejects.toThrow("starting again resumes it");
  const resumedAt = hub.ranges.filter((r) => r.path === WEIGHTS).map((r) => r.start);
  expect(resumedAt).toEqual([cut, 2 * cut]); // attempts 2 and 3 continued the first
  hub.ranges.length = 0;
  const target = await startLoraServe(["--model", "acme/tiny-llama2"], { env: env(cache) });
  try {
    expect(hub.ranges.filter((r) => r.path === WEIGHTS).map((r) => r.start)).toEqual([3 * cut]); // the next run picked up the partial file
    await expectFixture(target.url);
  } finally {
    await target.stop();
  }
}, 60_000);

test("--model s3://bucket/prefix: downloaded resumably into the model cache and served as the fixture", async () => {
  const { default: S3rver } = await import("s3rver");
  const s3 = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: join(tmp, "store"), configureBuckets: [{ name: "models", configs: [] }] });
  const { port } = await s3.run();
  try {
    const endpoint = `http://127.0.0.1:${port}`;
    const client = new Bun.S3Client({ bucket: "models", accessKeyId: "S3RVER", secretAccessKey: "S3RVER", endpoint });
    for (const f of ["config.json", "generation_config.json", WEIGHTS, "tokenizer.json", "tokenizer_config.json"]) {
      await client.write(`tiny-llama2/${f}`, Bun.file(join(repo, f)));
    }
    const cacheDir = join(tmp, "lora-cache", "adapters");
    const target = await startLoraServe(["--model", "s3://models/tiny-llama2", "--adapter-cache-dir", cacheDir], {
      env: { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1", AWS_ENDPOINT_URL_S3: endpoint },
    });
    try {
      const r = await fetch(`${target.url}/v1/completions`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: "s3://models/tiny-llama2", prompt: base.prompt_ids, max_tokens: base.greedy_ids.length, temperature: 0, ignore_eos: true, return_token_ids: true }),
      });
      expect(r.status).toBe(200);
      const n = comparableSteps(base.greedy_steps, 2e-4);
      expect(((await r.json()) as any).choices[0].token_ids.slice(0, n)).toEqual(base.greedy_ids.slice(0, n));
      expect(existsSync(join(tmp, "lora-cache", "models"))).toBe(true);
    } finally {
      await target.stop();
    }
  } finally {
    await s3.close();
  }
}, 60_000);
