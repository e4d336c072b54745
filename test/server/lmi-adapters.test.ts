// SageMaker LMI's adapter management API on a real server: register from a local directory, select
// the adapter per request (header, custom attributes, ?adapter=), update with pin, list with pages,
// delete; the same through /models/{model}/adapters with query arguments.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadCache } from "../../src/sources/download-cache.ts";
import { adaptersDir, comparableSteps, readReference, type ReferenceCase } from "../helpers/fixtures.ts";
import { MODEL, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-lmi-adapters-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let s: FixtureServer;
let es: ReferenceCase;
beforeAll(async () => {
  for (const name of ["es", "fr"]) cpSync(join(adaptersDir(MODEL), name), join(tmp, name), { recursive: true });
  const remote = { cache: new DownloadCache(join(tmp, "cache"), 1 << 30), limits: { maxBytes: 1 << 20, maxFiles: 16 } };
  s = await startFixtureServer({ adapterPolicy: { runtimeUpdates: true, allowedRoots: [tmp], remote } });
  es = (await readReference(MODEL)).cases.find((c) => c.adapter === "es" && c.prompt === "plain")!;
});
afterAll(() => s.close());

const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  fetch(`${s.url}${path}`, { method, headers: { "Content-Type": "application/json", ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });

// the reference prompt as text (LMI takes text), and the greedy token ids an adapter gives for it
const text = () => s.service.model.tokenizer.decode(es.prompt_ids, { skipSpecialTokens: true });
async function lmiIds(headers: Record<string, string>, query = ""): Promise<{ status: number; ids: number[] }> {
  const r = await call("POST", `/invocations${query}`, { inputs: text(), parameters: { max_new_tokens: es.greedy_ids.length, details: true, do_sample: false } }, headers);
  const body = (await r.json()) as any;
  return { status: r.status, ids: r.status === 200 ? body.details.tokens.map((t: any) => t.id) : [] };
}

describe("/adapters (one model served)", () => {
  test("register from a local directory; the header selects it and the output is the fixture's", async () => {
    expect(s.service.model.tokenizer.encode(text())).toEqual(es.prompt_ids); // the text round-trips to the reference prompt
    const r = await call("POST", "/adapters", { name: "tenant-a", src: join(tmp, "es") });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: "Adapter tenant-a registered" });
    const { status, ids } = await lmiIds({ "X-Amzn-SageMaker-Adapter-Identifier": "tenant-a" });
    expect(status).toBe(200);
    const n = comparableSteps(es.greedy_steps, 2e-4);
    expect(ids.slice(0, n)).toEqual(es.greedy_ids.slice(0, n));
    // the other ways SageMaker names the adapter
    expect((await lmiIds({ "X-Amzn-SageMaker-Custom-Attributes": "trace=1; adapter=tenant-a" })).ids).toEqual(ids);
    expect((await lmiIds({}, "?adapter=tenant-a")).ids).toEqual(ids);
  });

  test("update with pin, describe, list in pages", async () => {
    expect(await (await call("POST", "/adapters/tenant-a/update?pin=true")).json()).toEqual({ status: "Adapter tenant-a updated" });
    expect(s.service.model.adapters.isPinned("tenant-a")).toBe(true);
    expect(await (await call("GET", "/adapters/tenant-a")).json()).toEqual([{ name: "tenant-a", src: join(tmp, "es"), pin: true }]);
    const first = (await (await call("GET", "/adapters?limit=2")).json()) as any;
    expect(first.adapters).toHaveLength(2);
    const rest = (await (await call("GET", `/adapters?limit=100&next_page_token=${first.nextPageToken}`)).json()) as any;
    expect(rest.nextPageToken).toBeUndefined();
    expect([...first.adapters, ...rest.adapters].map((a: any) => a.name)).toEqual(s.service.adapterNames());
  });

  test("delete; the adapter is then unknown (404) and the others serve", async () => {
    await call("POST", "/adapters/tenant-a/update?pin=false");
    const r = await call("DELETE", "/adapters/tenant-a");
    expect(await r.json()).toEqual({ status: "Adapter tenant-a unregistered" });
    expect((await lmiIds({ "X-Amzn-SageMaker-Adapter-Identifier": "tenant-a" })).status).toBe(404);
    expect((await call("GET", "/adapters/tenant-a")).status).toBe(404);
    expect((await lmiIds({ "X-Amzn-SageMaker-Adapter-Identifier": "es" })).status).toBe(200);
  });

  test("refusals in LMI's shape: a second registration, a missing src, a path outside the roots", async () => {
    const again = await call("POST", "/adapters", { name: "es", src: join(tmp, "es") });
    expect(again.status).toBe(409);
    expect(((await again.json()) as any).code).toBe(409);
    expect((await call("POST", "/adapters", { name: "x" })).status).toBe(400);
    expect((await call("POST", "/adapters", { name: "x", src: adaptersDir(MODEL) + "/es" })).status).toBe(403);
  });
});

describe("packed adapters", () => {
  const tar = (name: string, args: string[]) => {
    const file = join(tmp, name);
    const p = Bun.spawnSync(["tar", "-czf", file, ...args]);
    if (p.exitCode !== 0) throw new Error(p.stderr.toString());
    return file;
  };

  test("a .tar.gz holding one adapter registers and serves as the fixture", async () => {
    const file = tar("es.tar.gz", ["-C", join(tmp, "es"), "adapter_config.json", "adapter_model.safetensors"]);
    expect((await call("POST", "/adapters", { name: "packed", src: file })).status).toBe(200);
    const { ids } = await lmiIds({ "X-Amzn-SageMaker-Adapter-Identifier": "packed" });
    const n = comparableSteps(es.greedy_steps, 2e-4);
    expect(ids.slice(0, n)).toEqual(es.greedy_ids.slice(0, n));
  });

  test("a tarball over its caps is refused (400) and the server keeps serving", async () => {
    for (let i = 0; i < 20; i++) await Bun.write(join(tmp, "many", `f${i}`), "x");
    const file = tar("many.tar.gz", ["-C", tmp, "many"]);
    const r = await call("POST", "/adapters", { name: "many", src: file });
    expect(r.status).toBe(400);
    expect(((await r.json()) as any).error).toContain("more than 16 entries");
    expect((await lmiIds({ "X-Amzn-SageMaker-Adapter-Identifier": "es" })).status).toBe(200);
  });
});

describe("/models/{model}/adapters", () => {
  test("register with query arguments (preload=false), select, delete", async () => {
    const base = `/models/${MODEL}/adapters`;
    const r = await call("POST", `${base}?name=tenant-b&src=${encodeURIComponent(join(tmp, "fr"))}&preload=false`);
    expect(r.status).toBe(200);
    expect(s.service.model.adapters.isLoaded("tenant-b")).toBe(false); // registered and checked, not read yet
    expect((await lmiIds({ "X-Amzn-SageMaker-Adapter-Identifier": "tenant-b" })).status).toBe(200);
    expect((await call("GET", `${base}/tenant-b`)).status).toBe(200);
    expect((await call("DELETE", `${base}/tenant-b`)).status).toBe(200);
    expect((await call("GET", "/models/no-such-model/adapters")).status).toBe(404);
  });
});

test("with runtime updating off, registration is refused (403) and listing still answers", async () => {
  const off = await startFixtureServer({ adapterPolicy: { runtimeUpdates: false, allowedRoots: [tmp] } });
  try {
    const r = await off.post("/adapters", { name: "x", src: join(tmp, "es") });
    expect(r.status).toBe(403);
    expect(((await r.json()) as any).error).toContain("--enable-runtime-lora-updating");
    expect((await fetch(`${off.url}/adapters`)).status).toBe(200);
  } finally {
    await off.close();
  }
});
