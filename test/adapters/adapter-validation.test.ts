// PEFT adapters: what is refused (AdapterError naming the adapter and why) and what loads, with
// PEFT's own rules for ranks and scales.
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdapterStore, UnknownAdapterError } from "../../src/adapters/adapter-store.ts";
import { loadLoraAdapter, type BaseModelView, type LoraAdapter } from "../../src/adapters/lora-adapter.ts";
import { AdapterError } from "../../src/adapters/peft-config.ts";
import { readModelConfig } from "../../src/model/config.ts";
import { openCheckpoint, openSafetensors } from "../../src/model/safetensors.ts";
import { tensorToFloat32 } from "../../src/model/tensor.ts";
import { projectionName } from "../../src/model/weights.ts";
import { adaptersDir, modelDir, type FixtureModel } from "../helpers/fixtures.ts";
import { thrown } from "../helpers/thrown.ts";

const tmp = mkdtempSync(join(tmpdir(), "lora-serve-adapters-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function baseView(model: FixtureModel): BaseModelView {
  const checkpoint = openCheckpoint(modelDir(model));
  return { config: readModelConfig(modelDir(model)), weight: (layer, module) => checkpoint.get(projectionName(layer, module))! };
}
const llama2 = baseView("tiny-llama2");
const L2 = adaptersDir("tiny-llama2");
const load = (dir: string, name: string, maxLoraRank = 64): LoraAdapter => loadLoraAdapter(dir, name, llama2, { maxLoraRank });

function expectAdapterError(fn: () => unknown, adapter: string, ...reason: (string | RegExp)[]): void {
  const err = thrown(() => fn());
  expect(err).toBeInstanceOf(AdapterError);
  expect((err as AdapterError).adapter).toBe(adapter);
  expect((err as Error).message).toContain(`adapter "${adapter}"`);
  for (const r of reason) expect((err as Error).message).toMatch(r);
}

let copies = 0;
/** A copy of a tiny-llama2 fixture adapter under tmp, its adapter_config.json passed through `edit`. */
function copyAdapter(name: string, edit: (c: Record<string, unknown>) => void = () => {}): string {
  const dir = join(tmp, `${copies++}`, name);
  cpSync(join(L2, name), dir, { recursive: true });
  const path = join(dir, "adapter_config.json");
  const config = JSON.parse(readFileSync(path, "utf8"));
  edit(config);
  // Infinity is written as 1e400, which JSON.parse reads back as Infinity (as a config file can)
  writeFileSync(path, JSON.stringify(config, (_, v) => (v === Infinity ? "__INF__" : v)).replace(/"__INF__"/g, "1e400"));
  return dir;
}

const moduleSet = (a: LoraAdapter): string[] => a.modules.map((m) => `${m.layer}.${m.module}`).sort();

describe("refused adapters", () => {
  test("tiny-mistral's fr against tiny-llama2 (3 layers of hidden 64 vs 2 of hidden 32)", () => {
    expectAdapterError(() => load(join(adaptersDir("tiny-mistral"), "fr"), "fr"), "fr", /model\.layers\.2\..*the base model has 2 layers/);
    const store = new AdapterStore(llama2, 64);
    store.register("mistral-fr", join(adaptersDir("tiny-mistral"), "fr"));
    expectAdapterError(() => store.get("mistral-fr"), "mistral-fr", "the base model has 2 layers");
  });

  test("tiny-llama3's b against tiny-llama2: same layers, different shapes", () => {
    expectAdapterError(() => load(join(adaptersDir("tiny-llama3"), "b"), "b"), "b", "has shape [4,16]", "needs [4,32]", "another base model");
    const store = new AdapterStore(llama2, 64);
    store.register("b3", join(adaptersDir("tiny-llama3"), "b"));
    expectAdapterError(() => store.get("b3"), "b3", "has shape [4,16]");
    // a failed load is not cached as a success: it fails again
    expectAdapterError(() => store.get("b3"), "b3", "has shape [4,16]");
  });

  test("rank over max_lora_rank", () => {
    expectAdapterError(() => load(join(L2, "ru"), "ru", 32), "ru", "rank 64", "max_lora_rank 32");
    // checked when the directory is registered: ru is reported and left out, the others serve
    const store = new AdapterStore(llama2, 32);
    const rejected: [string, string][] = [];
    expect(store.addDirectory(L2, (name, e) => rejected.push([name, e.message]))).toEqual(["dora", "es", "fr", "rp", "rs"]);
    expect(rejected).toHaveLength(1);
    expect(rejected[0][0]).toBe("ru");
    expect(rejected[0][1]).toContain("max_lora_rank 32");
    expect(() => store.get("ru")).toThrow(UnknownAdapterError);
    // without a handler the first broken adapter fails the whole directory
    expectAdapterError(() => new AdapterStore(llama2, 32).addDirectory(L2), "ru", "rank 64", "max_lora_rank 32");
    expect(store.get("rs").maxRank).toBe(32); // exactly at the limit is fine
    expect(() => store.get("nope")).toThrow(UnknownAdapterError);
  });

  const configCases: [string, string, (c: Record<string, unknown>) => void, (string | RegExp)[]][] = [
    ["unknown peft_type", "es", (c) => (c.peft_type = "PREFIX_TUNING"), ["peft_type", "PREFIX_TUNING", "not supported"]],
    ["bias all", "es", (c) => (c.bias = "all"), ['bias "all"', "not supported"]],
    ["modules_to_save", "es", (c) => (c.modules_to_save = ["lm_head"]), ["modules_to_save", "lm_head"]],
    ["a targeted module without weights", "es", (c) => (c.target_modules as string[]).push("k_proj"), ["target_modules", "k_proj", "no weights"]],
    ["a target the model does not have", "es", (c) => (c.target_modules as string[]).push("c_attn"), ['"c_attn"', "does not exist"]],
    ["weights of rank 8 with r = 4", "es", (c) => (c.r = 4), ["rank 8 in its weights", "4 in adapter_config.json"]],
    ["layers_to_transform [0] with weights for both layers", "es", (c) => (c.layers_to_transform = [0]), ["model.layers.1.", "layers_to_transform"]],
    // PEFT's own rules for ranks and scales; each would load and give wrong output
    ["an infinite alpha_pattern (JSON 1e400)", "es", (c) => (c.alpha_pattern = { q_proj: Infinity }), ['alpha_pattern["q_proj"]', "positive finite", "Infinity"]],
    ["lora_alpha -1e30", "es", (c) => (c.lora_alpha = -1e30), ["lora_alpha must be a positive finite number", "-1e+30"]],
    ["rank_pattern rank 0", "es", (c) => (c.rank_pattern = { v_proj: 0 }), ['rank_pattern["v_proj"] must be a positive integer']],
    ["rank_pattern rank -8", "es", (c) => (c.rank_pattern = { v_proj: -8 }), ['rank_pattern["v_proj"]', "-8"]],
    ["rank_pattern rank 2.5", "es", (c) => (c.rank_pattern = { v_proj: 2.5 }), ['rank_pattern["v_proj"]', "2.5"]],
    // patterns that would backtrack for seconds on every load
    ["target_modules (.+)+X", "es", (c) => (c.target_modules = "(.+)+X"), ["target_modules is refused", "catastrophic backtracking"]],
    ["a rank_pattern key (a*)*b", "es", (c) => (c.rank_pattern = { "(a*)*b": 8 }), ['rank_pattern key "(a*)*b" is refused']],
  ];
  for (const [label, name, edit, reason] of configCases) {
    test(label, () => expectAdapterError(() => load(copyAdapter(name, edit), name), name, ...reason));
  }

  test("the same refusals through AdapterStore", () => {
    const store = new AdapterStore(llama2, 64);
    store.register("bad-bias", copyAdapter("es", (c) => (c.bias = "all")));
    expectAdapterError(() => store.get("bad-bias"), "bad-bias", 'bias "all"');
  });

  test("truncated adapter_model.safetensors / adapter_model.bin", () => {
    const dir = copyAdapter("es");
    const st = join(dir, "adapter_model.safetensors");
    truncateSync(st, statSync(st).size - 100);
    expectAdapterError(() => load(dir, "es"), "es", "adapter_model.safetensors", "outside the data section");
    truncateSync(st, 4);
    expectAdapterError(() => load(dir, "es"), "es", "shorter than 8");
    const ru = copyAdapter("ru");
    const bin = join(ru, "adapter_model.bin");
    truncateSync(bin, statSync(bin).size - 100);
    expectAdapterError(() => load(ru, "ru"), "ru", "adapter_model.bin", "truncated");
  });

  test("no weights file", () => {
    const dir = copyAdapter("es");
    rmSync(join(dir, "adapter_model.safetensors"));
    expectAdapterError(() => load(dir, "es"), "es", "neither adapter_model.safetensors nor adapter_model.bin");
  });

  test("malformed and missing adapter_config.json", () => {
    const dir = copyAdapter("es");
    writeFileSync(join(dir, "adapter_config.json"), '{"r": 8, "target_modules": ["q_proj",');
    expectAdapterError(() => load(dir, "es"), "es", "adapter_config.json", /JSON|Unexpected|Expected/i);
    writeFileSync(join(dir, "adapter_config.json"), "[1, 2]");
    expectAdapterError(() => load(dir, "es"), "es", "not a JSON object");
    rmSync(join(dir, "adapter_config.json"));
    expectAdapterError(() => load(dir, "es"), "es", "does not exist");
  });
});

describe("accepted adapters", () => {
  test("target_modules as a regex loads the same modules as the list", () => {
    const list = load(join(L2, "es"), "es");
    const regex = load(copyAdapter("es", (c) => (c.target_modules = ".*\\.(q_proj|v_proj)")), "es");
    expect(regex.config.targetModules).toBe(".*\\.(q_proj|v_proj)");
    expect(moduleSet(list)).toEqual(["0.q_proj", "0.v_proj", "1.q_proj", "1.v_proj"]);
    expect(moduleSet(regex)).toEqual(moduleSet(list));
    regex.modules.forEach((m, i) => expect(m.a).toEqual(list.modules[i].a));
    // PEFT matches a regex against the whole path (re.fullmatch): a partial match selects nothing
    expectAdapterError(() => load(copyAdapter("es", (c) => (c.target_modules = "q_proj|v_proj")), "es"), "es", "which target_modules does not name");
  });

  test("rp: rank_pattern / alpha_pattern give per-module ranks and scales", () => {
    const rp = load(join(L2, "rp"), "rp");
    // PEFT: rank = rank_pattern[key] ?? r (8), alpha = alpha_pattern[key] ?? lora_alpha (16),
    // scaling = alpha / rank. v: 16/4, down: 16/12, o: alpha 4 over the default rank 8.
    const expected: Record<string, [number, number]> = { q_proj: [8, 2], v_proj: [4, 4], o_proj: [8, 0.5], down_proj: [12, 16 / 12] };
    expect(moduleSet(rp)).toEqual(["0.down_proj", "0.o_proj", "0.q_proj", "0.v_proj", "1.down_proj", "1.o_proj", "1.q_proj", "1.v_proj"]);
    for (const m of rp.modules) {
      const [rank, scale] = expected[m.module];
      expect(m.rank).toBe(rank);
      expect(m.scale).toBe(scale);
      const [out, inDim] = m.module === "down_proj" ? [32, 96] : m.module === "o_proj" ? [32, 128] : [128, 32];
      expect(m.a.length).toBe(rank * inDim);
      expect(m.b.length).toBe(out * rank);
    }
    expect(rp.maxRank).toBe(12);
  });

  test("rs: rsLoRA scale alpha / sqrt(r)", () => {
    const rs = load(join(L2, "rs"), "rs");
    expect(rs.modules.length).toBe(14);
    for (const m of rs.modules) {
      expect(m.rank).toBe(32);
      expect(m.scale).toBe(8 / Math.sqrt(32));
    }
  });

  test("lora_dropout has no effect on what is loaded", () => {
    const plain = load(join(L2, "es"), "es");
    const dropped = load(copyAdapter("es", (c) => (c.lora_dropout = 0.9)), "es");
    expect(dropped.modules.map(({ layer, module, rank, scale, a, b }) => ({ layer, module, rank, scale, a, b })))
      .toEqual(plain.modules.map(({ layer, module, rank, scale, a, b }) => ({ layer, module, rank, scale, a, b })));
  });

  test("dora: magnitude / ||W + scale·B·A|| per output row", () => {
    const dora = load(join(L2, "dora"), "dora");
    const file = openSafetensors(join(L2, "dora", "adapter_model.safetensors")).tensors;
    const get = (path: string, part: string) => tensorToFloat32(file.get(`base_model.model.${path}.${part}`)!);
    expect(dora.modules.length).toBe(4);
    for (const m of dora.modules) {
      const path = `model.layers.${m.layer}.self_attn.${m.module}`;
      const w = tensorToFloat32(llama2.weight(m.layer, m.module));
      const a = get(path, "lora_A.weight"), b = get(path, "lora_B.weight"), mag = get(path, "lora_magnitude_vector");
      const out = mag.length, inDim = a.length / 8;
      expect(m.scale).toBe(2);
      expect(m.doraScale!.length).toBe(out);
      for (let o = 0; o < out; o++) {
        let norm = 0;
        for (let i = 0; i < inDim; i++) {
          let v = w[o * inDim + i];
          for (let j = 0; j < 8; j++) v += 2 * b[o * 8 + j] * a[j * inDim + i];
          norm += v * v;
        }
        // both sides in float64 from the same fp32 inputs; the result is stored as fp32 (2^-24 relative)
        expect(Math.abs(m.doraScale![o] - mag[o] / Math.sqrt(norm))).toBeLessThanOrEqual(1e-7 * Math.abs(m.doraScale![o]));
      }
    }
    expect(load(join(L2, "es"), "es").modules.every((m) => m.doraScale === undefined)).toBe(true);
  });

  test("ru (adapter_model.bin) loads the same module set as rs, rank 64, scale 128/64", () => {
    const ru = load(join(L2, "ru"), "ru");
    expect(moduleSet(ru)).toEqual(moduleSet(load(join(L2, "rs"), "rs")));
    for (const m of ru.modules) {
      expect(m.rank).toBe(64);
      expect(m.scale).toBe(2);
    }
    expect(ru.maxRank).toBe(64);
  });
});
