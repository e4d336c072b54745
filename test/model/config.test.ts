// HF config.json / generation_config.json parsing and RoPE inverse frequencies.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelConfigError, parseModelConfig, readGenerationDefaults, readModelConfig } from "../../src/model/config.ts";
import { ropeInverseFrequencies } from "../../src/model/rope.ts";
import { modelDir, type FixtureModel } from "../helpers/fixtures.ts";
import { thrown } from "../helpers/thrown.ts";

const rawConfig = (m: FixtureModel): Record<string, unknown> => JSON.parse(readFileSync(join(modelDir(m), "config.json"), "utf8"));

function expectConfigError(c: Record<string, unknown>, ...parts: string[]): void {
  const err = thrown(() => parseModelConfig(c));
  expect(err).toBeInstanceOf(ModelConfigError);
  for (const p of parts) expect((err as Error).message).toContain(p);
}

describe("fixture configs", () => {
  test("tiny-llama2: explicit head_dim, untied, eos a number", () => {
    expect(readModelConfig(modelDir("tiny-llama2"))).toEqual({
      modelType: "llama", vocabSize: 32000, hiddenSize: 32, intermediateSize: 96, numLayers: 2, numHeads: 2, numKvHeads: 2,
      headDim: 64, rmsNormEps: 1e-5, maxPositions: 512, ropeTheta: 10000, ropeScaling: { type: "default" }, slidingWindow: 0,
      tieWordEmbeddings: false, bosTokenId: 1, eosTokenIds: [2], torchDtype: "float16",
    });
  });

  test("tiny-mistral: head_dim = hidden / heads, sliding window, tied", () => {
    expect(readModelConfig(modelDir("tiny-mistral"))).toEqual({
      modelType: "mistral", vocabSize: 32000, hiddenSize: 64, intermediateSize: 160, numLayers: 3, numHeads: 1, numKvHeads: 1,
      headDim: 64, rmsNormEps: 1e-5, maxPositions: 1024, ropeTheta: 10000, ropeScaling: { type: "default" }, slidingWindow: 24,
      tieWordEmbeddings: true, bosTokenId: 1, eosTokenIds: [2], torchDtype: "bfloat16",
    });
    expect(parseModelConfig({ ...rawConfig("tiny-mistral"), use_sliding_window: false }).slidingWindow).toBe(0);
  });

  test("tiny-llama3: GQA, llama3 rope scaling, eos a list", () => {
    expect(readModelConfig(modelDir("tiny-llama3"))).toEqual({
      modelType: "llama", vocabSize: 128256, hiddenSize: 16, intermediateSize: 48, numLayers: 2, numHeads: 2, numKvHeads: 1,
      headDim: 64, rmsNormEps: 1e-5, maxPositions: 512, ropeTheta: 500000,
      ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 },
      slidingWindow: 0, tieWordEmbeddings: true, bosTokenId: 128000, eosTokenIds: [128001, 128008, 128009], torchDtype: "bfloat16",
    });
  });

  test("head_dim absent, null or explicit", () => {
    const c = rawConfig("tiny-llama2");
    delete c.head_dim;
    expect(parseModelConfig(c).headDim).toBe(16); // 32 / 2
    expect(parseModelConfig({ ...c, head_dim: null }).headDim).toBe(16);
    expect(parseModelConfig({ ...c, head_dim: 128 }).headDim).toBe(128);
    expectConfigError({ ...c, hidden_size: 30, num_attention_heads: 4 }, "head_dim 7.5");
  });

  test("eos_token_id as a number, a list, or absent", () => {
    const c = rawConfig("tiny-llama2");
    expect(parseModelConfig({ ...c, eos_token_id: 7 }).eosTokenIds).toEqual([7]);
    expect(parseModelConfig({ ...c, eos_token_id: [7, 9] }).eosTokenIds).toEqual([7, 9]);
    expect(parseModelConfig({ ...c, eos_token_id: null }).eosTokenIds).toEqual([]);
    expectConfigError({ ...c, eos_token_id: "2" }, "eos_token_id");
  });
});

describe("rope forms", () => {
  const llama3 = rawConfig("tiny-llama3");
  const { rope_theta: _t, rope_scaling: _s, ...bare } = llama3;

  test("rope_parameters (llama3) equals the classic rope_theta + rope_scaling", () => {
    const newer = parseModelConfig({
      ...bare,
      rope_parameters: { rope_type: "llama3", rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
    });
    expect(newer).toEqual(parseModelConfig(llama3));
  });

  test("rope_parameters (default) equals the classic form", () => {
    const classic = rawConfig("tiny-llama2");
    const { rope_theta: _a, rope_scaling: _b, ...rest } = classic;
    expect(parseModelConfig({ ...rest, rope_parameters: { rope_type: "default", rope_theta: 10000 } })).toEqual(parseModelConfig(classic));
    // and theta is not silently defaulted: another theta shows up
    expect(parseModelConfig({ ...rest, rope_parameters: { rope_type: "default", rope_theta: 1e6 } }).ropeTheta).toBe(1e6);
  });

  test("the legacy `type` key of rope_scaling", () => {
    const c = { ...rawConfig("tiny-llama2"), rope_scaling: { type: "linear", factor: 4 } };
    expect(parseModelConfig(c).ropeScaling).toEqual({ type: "linear", factor: 4 });
  });

  test("linear scaling divides every inverse frequency by the factor", () => {
    const base = parseModelConfig(rawConfig("tiny-llama2"));
    const linear = parseModelConfig({ ...rawConfig("tiny-llama2"), rope_scaling: { rope_type: "linear", factor: 3 } });
    const f0 = ropeInverseFrequencies(base), f1 = ropeInverseFrequencies(linear);
    expect(f1.length).toBe(32);
    // HF: inv_freq / factor in fp32, i.e. one rounding of the exact quotient
    f0.forEach((f, i) => expect(f1[i]).toBe(Math.fround(f / 3)));
    // the default frequencies themselves: 10000^(-2i/64) rounded once to fp32 (2^-24 = 6e-8 relative; 2x margin)
    f0.forEach((f, i) => expect(Math.abs(f - Math.pow(10000, -i / 32))).toBeLessThanOrEqual(1.2e-7 * f));
  });

  test("llama3 inverse frequencies against the Llama-3.1 formula in float64", () => {
    const config = parseModelConfig(llama3);
    const got = ropeInverseFrequencies(config);
    const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: old } = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 };
    const regimes = new Set<string>();
    for (let i = 0; i < 32; i++) {
      const f = Math.pow(500000, -(2 * i) / 64);
      const wavelen = (2 * Math.PI) / f;
      let want: number;
      if (wavelen < old / high) {
        want = f;
        regimes.add("kept");
      } else if (wavelen > old / low) {
        want = f / factor;
        regimes.add("scaled");
      } else {
        const smooth = (old / wavelen - low) / (high - low);
        want = (1 - smooth) * f / factor + smooth * f;
        regimes.add("blended");
      }
      // the engine rounds to fp32 twice (the base frequency f, then the result), 2^-24 relative
      // each; in the blend the weight `smooth` is itself proportional to f, which at most doubles
      // the first: < 3 x 2^-24 = 1.8e-7 (measured 1.29e-7). A wrong regime or formula is off by >1e-3.
      expect(Math.abs(got[i] - want)).toBeLessThanOrEqual(2e-7 * want);
    }
    expect([...regimes].sort()).toEqual(["blended", "kept", "scaled"]);
  });
});

describe("errors", () => {
  test("unsupported architecture", () => {
    expectConfigError({ architectures: ["GPT2LMHeadModel"], model_type: "gpt2", vocab_size: 50257 }, "unsupported architecture", "GPT2LMHeadModel", "LlamaForCausalLM");
    expectConfigError({ ...rawConfig("tiny-llama2"), architectures: ["LlamaForSequenceClassification"] }, "LlamaForSequenceClassification");
  });

  test("unsupported rope type names it, in either form", () => {
    expectConfigError({ ...rawConfig("tiny-llama2"), rope_scaling: { rope_type: "yarn", factor: 4 } }, "rope_scaling", '"yarn"', "not supported");
    expectConfigError({ ...rawConfig("tiny-llama2"), rope_parameters: { rope_type: "yarn", rope_theta: 1e4, factor: 4 } }, "rope_parameters", '"yarn"');
  });

  test("llama3 scaling with a missing field, a missing size, other activations", () => {
    expectConfigError({ ...rawConfig("tiny-llama3"), rope_scaling: { rope_type: "llama3", factor: 8 } }, "low_freq_factor", "missing");
    const c = rawConfig("tiny-llama2");
    delete c.hidden_size;
    expectConfigError(c, "hidden_size is missing");
    expectConfigError({ ...rawConfig("tiny-llama2"), hidden_act: "gelu" }, "hidden_act gelu");
    expectConfigError({ ...rawConfig("tiny-llama2"), num_key_value_heads: 3 }, "not a multiple");
  });
});

describe("generation_config.json", () => {
  const tmp = mkdtempSync(join(tmpdir(), "lora-serve-config-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  test("fixture defaults", () => {
    expect(readGenerationDefaults(modelDir("tiny-llama2"))).toEqual({ temperature: 0.6, topP: 0.9, topK: undefined, doSample: true, eosTokenIds: [2] });
    expect(readGenerationDefaults(modelDir("tiny-llama3")).eosTokenIds).toEqual([128001, 128008, 128009]);
  });

  test("absent file gives no defaults; a malformed one is an error", async () => {
    expect(readGenerationDefaults(tmp)).toEqual({});
    await Bun.write(join(tmp, "generation_config.json"), "{ nope");
    expect(() => readGenerationDefaults(tmp)).toThrow(ModelConfigError);
  });
});
