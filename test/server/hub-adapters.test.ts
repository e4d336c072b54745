// Adapters from a Hugging Face Hub repo id through @huggingface/hub, against a Hub-layout server on
// loopback (HF_ENDPOINT): registered through both adapter APIs they serve the fixture's output; a
// private repo needs HF_TOKEN; files land in HF_HUB_CACHE; a tampered file is refused.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadCache } from "../../src/sources/download-cache.ts";
import { DEFAULT_DOWNLOAD_LIMITS, type RemoteSources } from "../../src/sources/remote-source.ts";
import { AdapterResolver } from "../../src/server/adapter-resolver.ts";
import { adaptersDir, comparableSteps, readReference, type ReferenceCase } from "../helpers/fixtures.ts";
import { startHubServer, type HubServer } from "../helpers/hub-server.ts";
import { MODEL, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-hub-"));
let hub: HubServer, privateHub: HubServer;
let s: FixtureServer;
let es: ReferenceCase;
let remote: RemoteSources;

beforeAll(async () => {
  cpSync(join(adaptersDir(MODEL), "es"), join(tmp, "repo-es"), { recursive: true });
  hub = startHubServer({ "acme/es-adapter": join(tmp, "repo-es") });
  privateHub = startHubServer({ "acme/private-es": join(tmp, "repo-es") }, { token: "hf_secret" });
  remote = { cache: new DownloadCache(join(tmp, "cache"), 1 << 30), limits: DEFAULT_DOWNLOAD_LIMITS, env: { HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(tmp, "hf-cache") } };
  s = await startFixtureServer({ adapterPolicy: { runtimeUpdates: true, allowedRoots: [], remote } });
  es = (await readReference(MODEL)).cases.find((c) => c.adapter === "es" && c.prompt === "plain")!;
});
afterAll(async () => {
  await s.close();
  hub.stop();
  privateHub.stop();
  rmSync(tmp, { recursive: true, force: true });
});

async function expectFixture(model: string) {
  const r = await s.post("/v1/completions", { model, prompt: es.prompt_ids, max_tokens: es.greedy_ids.length, temperature: 0, ignore_eos: true, return_token_ids: true });
  expect(r.status).toBe(200);
  const n = comparableSteps(es.greedy_steps, 2e-4);
  expect(((await r.json()) as any).choices[0].token_ids.slice(0, n)).toEqual(es.greedy_ids.slice(0, n));
}

test("vLLM's load_lora_adapter and LMI's register take a Hub repo id; both serve the fixture's output", async () => {
  expect((await s.post("/v1/load_lora_adapter", { lora_name: "hub-es", lora_path: "acme/es-adapter" })).status).toBe(200);
  await expectFixture("hub-es");
  expect((await s.post("/adapters", { name: "hub-es-2", src: "acme/es-adapter@main" })).status).toBe(200);
  await expectFixture("hub-es-2");
  expect(existsSync(join(tmp, "hf-cache", "models--acme--es-adapter", "snapshots"))).toBe(true); // HF_HUB_CACHE honoured
  expect(hub.downloads.filter((p) => p === "adapter_model.safetensors").length).toBeGreaterThan(0);
});

test("a private repo: refused without HF_TOKEN, served with it", async () => {
  remote.env = { HF_ENDPOINT: privateHub.url, HF_HUB_CACHE: join(tmp, "hf-cache-2") };
  const refused = await s.post("/adapters", { name: "private", src: "acme/private-es" });
  expect(refused.status).toBe(400);
  remote.env = { ...remote.env, HF_TOKEN: "hf_secret" };
  expect((await s.post("/adapters", { name: "private", src: "acme/private-es" })).status).toBe(200);
  await expectFixture("private");
});

test("a repo that does not exist, and a file whose content does not match its hash, are refused", async () => {
  remote.env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(tmp, "hf-cache-3") };
  expect((await s.post("/adapters", { name: "nope", src: "acme/nope" })).status).toBe(400);
  // same size, other bytes: the size check passes, the hash check must not
  const tampered = startHubServer({ "acme/es-adapter": join(tmp, "repo-es") });
  const config = new TextEncoder().encode(await Bun.file(join(tmp, "repo-es", "adapter_config.json")).text());
  tampered.tamper("adapter_config.json", config.map((b, i) => (i === config.length - 2 ? b ^ 1 : b)));
  try {
    remote.env = { HF_ENDPOINT: tampered.url, HF_HUB_CACHE: join(tmp, "hf-cache-4") };
    const r = await s.post("/adapters", { name: "tampered", src: "acme/es-adapter" });
    expect(r.status).toBe(400);
    expect(((await r.json()) as any).error).toContain("adapter_config.json: its content does not match the Hub's hash");
  } finally {
    tampered.stop();
  }
  await expectFixture("es");
});

test("load on first request from the Hub: --adapter-source hf://acme fetches acme/<name>", async () => {
  remote.env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(tmp, "hf-cache-5") };
  const t = await startFixtureServer({ resolver: new AdapterResolver("hf://acme", remote) });
  try {
    const r = await t.post("/v1/completions", { model: "es-adapter", prompt: es.prompt_ids, max_tokens: es.greedy_ids.length, temperature: 0, ignore_eos: true, return_token_ids: true });
    expect(r.status).toBe(200);
    const n = comparableSteps(es.greedy_steps, 2e-4);
    expect(((await r.json()) as any).choices[0].token_ids.slice(0, n)).toEqual(es.greedy_ids.slice(0, n));
    expect((await t.post("/v1/completions", { model: "no-such-repo", prompt: "Hi", max_tokens: 2 })).status).toBe(404);
  } finally {
    await t.close();
  }
});
