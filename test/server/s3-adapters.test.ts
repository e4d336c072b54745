// The SageMaker flow against a real S3-compatible server (s3rver, in-process on loopback): register
// an adapter from s3://, use it through /invocations with the adapter header (the fixture's output),
// update with pin, delete, 404 after; the same through /models/{model}/adapters. The download is
// cached, checked against size and ETag, and refused past its limits.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";
import { DownloadCache } from "../../src/sources/download-cache.ts";
import { DEFAULT_DOWNLOAD_LIMITS, type RemoteSources } from "../../src/sources/remote-source.ts";
import { AdapterResolver } from "../../src/server/adapter-resolver.ts";
import { adaptersDir, comparableSteps, readReference, type ReferenceCase } from "../helpers/fixtures.ts";
import { MODEL, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-s3-"));
let s3: S3rver | undefined;
let s: FixtureServer;
let es: ReferenceCase;
let cache: DownloadCache;
let remote: RemoteSources;

beforeAll(async () => {
  s3 = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: join(tmp, "store"), configureBuckets: [{ name: "models", configs: [] }] });
  const { port } = await s3.run();
  const env = { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1", AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}` };
  const client = new Bun.S3Client({ bucket: "models", accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, endpoint: env.AWS_ENDPOINT_URL_S3 });
  for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
    await client.write(`tenants/es/${file}`, readFileSync(join(adaptersDir(MODEL), "es", file)));
    await client.write(`on-demand/tenant-s3/${file}`, readFileSync(join(adaptersDir(MODEL), "es", file)));
  }
  for (let i = 0; i < 3; i++) await client.write(`many/part-${i}`, "x");
  cache = new DownloadCache(join(tmp, "cache"), 1 << 30);
  remote = { cache, limits: { ...DEFAULT_DOWNLOAD_LIMITS, maxFiles: 2 }, env };
  s = await startFixtureServer({ adapterPolicy: { runtimeUpdates: true, allowedRoots: [], remote } });
  es = (await readReference(MODEL)).cases.find((c) => c.adapter === "es" && c.prompt === "plain")!;
});
afterAll(async () => {
  await s?.close();
  await s3?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  fetch(`${s.url}${path}`, { method, headers: { "Content-Type": "application/json", ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });

async function invokeWith(adapter: string): Promise<{ status: number; ids: number[] }> {
  const inputs = s.service.model.tokenizer.decode(es.prompt_ids, { skipSpecialTokens: true });
  const r = await call("POST", "/invocations", { inputs, parameters: { max_new_tokens: es.greedy_ids.length, details: true } }, { "X-Amzn-SageMaker-Adapter-Identifier": adapter });
  const body = (await r.json()) as any;
  return { status: r.status, ids: r.status === 200 ? body.details.tokens.map((t: any) => t.id) : [] };
}

const expectFixture = (ids: number[]) => {
  const n = comparableSteps(es.greedy_steps, 2e-4);
  expect(n).toBeGreaterThan(3);
  expect(ids.slice(0, n)).toEqual(es.greedy_ids.slice(0, n));
};

describe.each([
  ["/adapters", (name: string) => call("POST", "/adapters", { name, src: "s3://models/tenants/es" }), "/adapters"],
  [`/models/${MODEL}/adapters`, (name: string) => call("POST", `/models/${MODEL}/adapters?name=${name}&src=${encodeURIComponent("s3://models/tenants/es/")}`), `/models/${MODEL}/adapters`],
] as const)("SageMaker flow through %s", (_label, register, base) => {
  const name = base === "/adapters" ? "from-s3" : "from-s3-b";

  test("register from s3://, invoke with the header: the fixture's output", async () => {
    const r = await register(name);
    expect(r.status).toBe(200);
    const { status, ids } = await invokeWith(name);
    expect(status).toBe(200);
    expectFixture(ids);
  });

  test("update with pin, delete, 404 after", async () => {
    expect((await call("POST", `${base}/${name}/update`, { pin: true })).status).toBe(200);
    expect(s.service.model.adapters.isPinned(name)).toBe(true);
    await call("POST", `${base}/${name}/update`, { pin: false });
    expect((await call("DELETE", `${base}/${name}`)).status).toBe(200);
    expect((await invokeWith(name)).status).toBe(404);
  });
});

test("one download per source: registering the same URL again reads the cache", async () => {
  const entries = () => readdirSync(cache.dir).filter((n) => !n.startsWith("."));
  const before = entries(); // the two flows' URLs (with and without the trailing slash)
  expect(before).toHaveLength(2);
  for (const e of before) expect(readdirSync(join(cache.dir, e)).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
  const [a, b] = await Promise.all(["again-1", "again-2"].map((name) => call("POST", "/adapters", { name, src: "s3://models/tenants/es" })));
  expect([a.status, b.status]).toEqual([200, 200]);
  expect(entries()).toEqual(before);
});

test("refused: a prefix over the file limit, an empty prefix, no such bucket; the server keeps serving", async () => {
  for (const src of ["s3://models/many", "s3://models/nothing-here", "s3://no-such-bucket/x"]) {
    const r = await call("POST", "/adapters", { name: "bad", src });
    expect(r.status).toBe(400);
    expect(((await r.json()) as any).error).toContain(JSON.stringify(src));
  }
  expect((await invokeWith("es")).status).toBe(200);
});

test("load on first request from an s3:// source: the unknown name is fetched and serves the fixture's output", async () => {
  const t = await startFixtureServer({ resolver: new AdapterResolver("s3://models/on-demand", remote) });
  try {
    const inputs = t.service.model.tokenizer.decode(es.prompt_ids, { skipSpecialTokens: true });
    const r = await t.post("/invocations", { inputs, parameters: { max_new_tokens: es.greedy_ids.length, details: true } }, { headers: { "X-Amzn-SageMaker-Adapter-Identifier": "tenant-s3" } });
    expect(r.status).toBe(200);
    expectFixture(((await r.json()) as any).details.tokens.map((x: any) => x.id));
    const missing = await t.post("/invocations", { inputs, adapters: "not-there" });
    expect(missing.status).toBe(404);
  } finally {
    await t.close();
  }
});
