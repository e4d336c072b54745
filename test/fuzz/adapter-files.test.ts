// Seeded fuzzing of the adapter readers: mutated adapter_model.safetensors, adapter_model.bin
// (zip + pickle) and adapter_config.json, each loaded through the strict loader. Every case must end
// in a load or in a clean AdapterError naming the adapter: never a crash, a hang or another error
// type (a TypeError or RangeError would be a reader bug). FUZZ_ITERATIONS scales the run (default 1500
// per file kind in CI; millions when asked).
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdapterError } from "../../src/adapters/peft-config.ts";
import { loadLoraAdapter } from "../../src/adapters/lora-adapter.ts";
import { readModelConfig } from "../../src/model/config.ts";
import { seededRandom } from "../../src/bench/serve/workload.ts";
import { adaptersDir, modelDir } from "../helpers/fixtures.ts";

const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 1500);
// a .bin case takes ~7 ms here (unzip, unpickle, CRC): the time allowed grows with the count
const TIMEOUT_MS = Math.max(120_000, ITERATIONS * 40);
const tmp = mkdtempSync(join(tmpdir(), "lora-serve-fuzz-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const base = { config: readModelConfig(modelDir("tiny-llama2")), weight: () => { throw new AdapterError("fuzz", "no DoRA base here"); } };

/** One mutation of `bytes`: flipped bits, overwritten runs, cuts, insertions, duplicated spans. */
function mutate(bytes: Uint8Array, random: () => number): Uint8Array {
  const out = Array.from(bytes);
  const at = () => Math.floor(random() * out.length);
  const edits = 1 + Math.floor(random() * 4);
  for (let e = 0; e < edits && out.length > 0; e++) {
    const kind = Math.floor(random() * 6);
    const i = at();
    if (kind === 0) out[i] ^= 1 << Math.floor(random() * 8);
    else if (kind === 1) out[i] = [0, 0xff, 0x7f, 0x80, 0x22, 0x5c][Math.floor(random() * 6)];
    else if (kind === 2) out.length = Math.max(1, i);
    else if (kind === 3) out.splice(i, 0, ...Array.from({ length: 1 + Math.floor(random() * 16) }, () => Math.floor(random() * 256)));
    else if (kind === 4) out.splice(i, Math.floor(random() * 64));
    else out.splice(i, 0, ...out.slice(at(), at() + 32));
  }
  return Uint8Array.from(out);
}

function fuzz(adapter: string, file: string) {
  const original = readFileSync(join(adaptersDir("tiny-llama2"), adapter, file));
  const dir = join(tmp, `${adapter}-${file}`);
  cpSync(join(adaptersDir("tiny-llama2"), adapter), dir, { recursive: true });
  const random = seededRandom(file.length * 7919 + adapter.length);
  const reference = loadLoraAdapter(dir, adapter, base, { maxLoraRank: 64 });
  const same = (a: typeof reference) =>
    a.modules.length === reference.modules.length && a.modules.every((m, k) => Bun.deepEquals(m.a, reference.modules[k].a) && Bun.deepEquals(m.b, reference.modules[k].b) && m.scale === reference.modules[k].scale);
  const counts = { loaded: 0, refused: 0, sameWeights: 0 };
  for (let i = 0; i < ITERATIONS; i++) {
    writeFileSync(join(dir, file), mutate(original, random));
    try {
      const loaded = loadLoraAdapter(dir, adapter, base, { maxLoraRank: 64 });
      counts.loaded++;
      if (same(loaded)) counts.sameWeights++;
    } catch (e) {
      if (!(e instanceof AdapterError)) throw new Error(`case ${i}: ${(e as Error)?.name}: ${(e as Error)?.message}`);
      counts.refused++;
    }
  }
  console.log(`fuzz ${adapter}/${file}: ${ITERATIONS} inputs, ${counts.refused} clean errors, ${counts.loaded} loaded (${counts.sameWeights} with the original weights), 0 crashes`);
  return counts;
}

describe("adapter readers under mutation", () => {
  test("adapter_model.safetensors", () => {
    const c = fuzz("es", "adapter_model.safetensors");
    expect(c.refused + c.loaded).toBe(ITERATIONS);
    expect(c.refused).toBeGreaterThan(0);
  }, TIMEOUT_MS);

  test("adapter_model.bin (zip + pickle; CRC-checked)", () => {
    const c = fuzz("ru", "adapter_model.bin");
    expect(c.refused + c.loaded).toBe(ITERATIONS);
    // every byte of the weights is under a CRC: a mutant that loads changed only what carries no weight
    expect(c.sameWeights).toBe(c.loaded);
  }, TIMEOUT_MS);

  test("adapter_config.json", () => {
    const c = fuzz("es", "adapter_config.json");
    expect(c.refused + c.loaded).toBe(ITERATIONS);
  }, TIMEOUT_MS);
});
