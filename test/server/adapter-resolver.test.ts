// Load on first request: with an adapter source configured, a request naming an adapter the server
// does not hold fetches `<source>/<name>`, checks it and serves it (the fixture's output);
// concurrent first requests fetch once; names that leave the source, or that it lacks, are 404.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdapterResolver } from "../../src/server/adapter-resolver.ts";
import { adaptersDir, comparableSteps, readReference, type ReferenceCase } from "../helpers/fixtures.ts";
import { MODEL, startFixtureServer, type FixtureServer } from "./server-fixture.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-resolver-"));
const source = join(tmp, "source");
let s: FixtureServer;
let fr: ReferenceCase;

beforeAll(async () => {
  for (const tenant of ["tenant-a", "tenant-b"]) cpSync(join(adaptersDir(MODEL), "fr"), join(source, tenant), { recursive: true });
  cpSync(join(adaptersDir(MODEL), "es"), join(tmp, "secret"), { recursive: true }); // beside the source, not in it
  s = await startFixtureServer({ resolver: new AdapterResolver(source, undefined) });
  fr = (await readReference(MODEL)).cases.find((c) => c.adapter === "fr" && c.prompt === "plain")!;
});
afterAll(async () => {
  await s.close();
  rmSync(tmp, { recursive: true, force: true });
});

const greedy = async (model: string) => {
  const r = await s.post("/v1/completions", { model, prompt: fr.prompt_ids, max_tokens: fr.greedy_ids.length, temperature: 0, ignore_eos: true, return_token_ids: true });
  return { status: r.status, body: (await r.json()) as any };
};

test("an unknown adapter in the source is fetched on first request and gives the fixture's output", async () => {
  expect(s.service.hasAdapter("tenant-a")).toBe(false);
  const { status, body } = await greedy("tenant-a");
  expect(status).toBe(200);
  const n = comparableSteps(fr.greedy_steps, 2e-4);
  expect(body.choices[0].token_ids.slice(0, n)).toEqual(fr.greedy_ids.slice(0, n));
  expect(s.service.hasAdapter("tenant-a")).toBe(true);
});

test("concurrent first requests for one adapter load it once", async () => {
  const loads = async () => (await s.metrics.adapterLoads.get({ model: MODEL, tier: "cpu" }));
  const before = await loads();
  const answers = await Promise.all(Array.from({ length: 6 }, () => greedy("tenant-b")));
  expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
  expect((await loads()) - before).toBe(1);
});

test("names the source lacks or that leave it are 404, and the server keeps serving", async () => {
  for (const model of ["nobody", "..", "../secret", `${MODEL}:..`]) expect((await greedy(model)).status).toBe(404);
  expect(s.service.hasAdapter("secret")).toBe(false);
  expect((await greedy("es")).status).toBe(200);
});
