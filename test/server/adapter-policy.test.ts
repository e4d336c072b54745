// Runtime adapter loading is off unless enabled, and then only from under the allowed roots (symlinks
// followed); refusals name only what the client sent, and the server keeps serving.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveServeOptions } from "../../src/config/serve-options.ts";
import { adaptersDir } from "../helpers/fixtures.ts";
import { MODEL, startFixtureServer, withFixtureServer, type FixtureServer } from "./server-fixture.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-policy-"));
const allowed = join(tmp, "allowed"), outside = join(tmp, "outside");
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(() => {
  mkdirSync(allowed);
  mkdirSync(outside);
  cpSync(join(adaptersDir(MODEL), "es"), join(allowed, "es-inside"), { recursive: true });
  cpSync(join(adaptersDir(MODEL), "es"), join(outside, "es-outside"), { recursive: true });
  symlinkSync(join(outside, "es-outside"), join(allowed, "link-out"));
});

const load = (s: FixtureServer, name: string, path: string) => s.post("/v1/load_lora_adapter", { lora_name: name, lora_path: path });
const serves = async (s: FixtureServer, model: string) =>
  (await s.post("/v1/completions", { model, prompt: "Hello", max_tokens: 2, temperature: 0 })).status;

describe("runtime loading disabled (the default)", () => {
  const fx = withFixtureServer({ adapterPolicy: { runtimeUpdates: false, allowedRoots: [allowed] } });

  test("load and unload answer 403 naming the switch; the adapters already there keep serving", async () => {
    const r = await load(fx.s, "x", join(allowed, "es-inside"));
    expect(r.status).toBe(403);
    expect(((await r.json()) as any).error.message).toContain("--enable-runtime-lora-updating");
    expect((await fx.s.post("/v1/unload_lora_adapter", { lora_name: "es" })).status).toBe(403);
    expect(await serves(fx.s, "es")).toBe(200);
  });
});

describe("runtime loading enabled under one root", () => {
  const fx = withFixtureServer({ adapterPolicy: { runtimeUpdates: true, allowedRoots: [allowed] } });

  test("an adapter under the root loads and serves", async () => {
    expect((await load(fx.s, "inside", join(allowed, "es-inside"))).status).toBe(200);
    expect(await serves(fx.s, "inside")).toBe(200);
  });

  test("outside the root, by path, by '..' or through a symlink: 403 echoing only the sent path", async () => {
    const attempts = [join(outside, "es-outside"), `${allowed}/../outside/es-outside`, join(allowed, "link-out")];
    for (const path of attempts) {
      const r = await load(fx.s, "sneaky", path);
      expect(r.status).toBe(403);
      const err = ((await r.json()) as any).error;
      expect(err.param).toBe("lora_path");
      expect(err.message).toBe(`${JSON.stringify(path)} is outside the directories adapters may be loaded from`);
    }
    expect(await serves(fx.s, "sneaky")).toBe(404);
    expect(await serves(fx.s, "es")).toBe(200);
  });

  test("a relative path is refused (400): the server's working directory is no root", async () => {
    const r = await load(fx.s, "rel", "allowed/es-inside");
    expect(r.status).toBe(400);
  });
});

test("a pin over the cap (max_loras - 1) is refused with 409; the server keeps serving", async () => {
  const s = await startFixtureServer({ load: { maxLoras: 2 }, adapterPolicy: { runtimeUpdates: true, allowedRoots: [allowed] } });
  try {
    expect((await s.post("/adapters/es/update?pin=true", "")).status).toBe(200);
    const over = await s.post("/adapters/fr/update?pin=true", "");
    expect(over.status).toBe(409);
    expect(((await over.json()) as any).error).toContain("at most 1 (max_loras - 1)");
    const viaLoad = await load(s, "pinned-too", join(allowed, "es-inside"));
    expect(viaLoad.status).toBe(200); // unpinned: fine
    expect((await s.post("/v1/load_lora_adapter", { lora_name: "pinned-3", lora_path: join(allowed, "es-inside"), pinned: true })).status).toBe(409);
    expect(await serves(s, "fr")).toBe(200);
  } finally {
    await s.close();
  }
});

test("the switch: --enable-runtime-lora-updating, OPTION_ENABLE_RUNTIME_LORA_UPDATING or vLLM's variable", () => {
  const opts = (flags: Record<string, string | boolean>, env: Record<string, string>) => resolveServeOptions(flags, env, undefined, () => {});
  expect(opts({}, {}).enableRuntimeLoraUpdating).toBe(false);
  expect(opts({ "enable-runtime-lora-updating": true }, {}).enableRuntimeLoraUpdating).toBe(true);
  expect(opts({}, { OPTION_ENABLE_RUNTIME_LORA_UPDATING: "true" }).enableRuntimeLoraUpdating).toBe(true);
  expect(opts({}, { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" }).enableRuntimeLoraUpdating).toBe(true);
  expect(opts({ "allowed-adapter-roots": "/a, /b" }, {}).allowedAdapterRoots).toEqual(["/a", "/b"]);
});
