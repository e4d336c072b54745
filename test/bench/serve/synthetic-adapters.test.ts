// Synthetic adapters are real PEFT directories: the strict loader reads them at the ranks and
// modules asked for, and distinct adapters hold distinct weights.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeSyntheticAdapters } from "../../../src/bench/serve/synthetic-adapters.ts";
import { loadLoraAdapter } from "../../../src/adapters/lora-adapter.ts";
import { readModelConfig } from "../../../src/model/config.ts";
import { encodeSafetensors } from "../../../src/model/safetensors-writer.ts";
import { openSafetensors } from "../../../src/model/safetensors.ts";
import { modelDir } from "../../helpers/fixtures.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-synthetic-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test("safetensors writer: the strict reader reads back names, shapes, dtypes and values", async () => {
  const path = join(tmp, "t.safetensors");
  const a = Float32Array.from([1.5, -2, 3.25, 0, 7, 8]);
  const h = Uint16Array.from([0x3c00, 0xc000]); // fp16 1, -2
  await Bun.write(path, encodeSafetensors({ a: { dtype: "F32", shape: [2, 3], data: a }, h: { dtype: "F16", shape: [2], data: h } }, { format: "pt" }));
  const f = openSafetensors(path);
  expect(f.metadata).toEqual({ format: "pt" });
  expect(f.tensors.get("a")!.shape).toEqual([2, 3]);
  expect([...new Float32Array(f.tensors.get("a")!.data.slice().buffer)]).toEqual([...a]);
  expect(f.tensors.get("h")!.dtype).toBe("F16");
  expect(() => encodeSafetensors({ x: { dtype: "F32", shape: [4], data: a } })).toThrow("does not match");
});

test("adapters cycle through ranks and module sets and load through the strict PEFT loader", () => {
  const config = readModelConfig(modelDir("tiny-llama2"));
  const names = writeSyntheticAdapters(tmp, { config, count: 4, ranks: [8, 16], moduleSets: ["qkvo", "all"], seed: 3 });
  expect(names).toEqual(["bench-0000", "bench-0001", "bench-0002", "bench-0003"]);
  const base = { config, weight: () => { throw new Error("no DoRA here"); } };
  const loaded = names.map((n) => loadLoraAdapter(join(tmp, n), n, base, { maxLoraRank: 64 }));
  expect(loaded.map((a) => a.maxRank)).toEqual([8, 16, 8, 16]);
  expect(loaded.map((a) => new Set(a.modules.map((m) => m.module)).size)).toEqual([4, 7, 4, 7]);
  expect(loaded[0].modules).toHaveLength(config.numLayers * 4);
  // distinct adapters, distinct weights
  expect(loaded[0].modules[0].a).not.toEqual(loaded[2].modules[0].a);
  expect(() => writeSyntheticAdapters(tmp, { config, count: 1, ranks: [8], moduleSets: ["nope"] })).toThrow("unknown module set");
});
