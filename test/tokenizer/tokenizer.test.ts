import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TextTokenizer } from "../../src/tokenizer/tokenizer.ts";

const HF = join(import.meta.dir, "../fixtures/hf");
const modelDir = (name: string) => join(HF, "models", name);
const label = (text: string) => JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text);
interface EncodeCase { text: string; ids_with_special: number[]; ids: number[]; decoded: string; decoded_skip_special: string; hf_ids_with_special: number[] }
const encodeCases: Record<string, EncodeCase[]> = JSON.parse(readFileSync(join(HF, "tokenizer/encode.json"), "utf8"));
const ENCODE_MODELS = { llama2: "tiny-llama2", llama3: "tiny-llama3" };
const loaded = new Map<string, TextTokenizer>();
const loadTokenizer = (model: string) => loaded.get(model) ?? loaded.set(model, TextTokenizer.fromModelDir(modelDir(model))).get(model)!;

for (const [name, model] of Object.entries(ENCODE_MODELS)) {
  // encode as transformers' AutoTokenizer (hf_ids_with_special; without special tokens, the same
  // less the BOS the post-processor adds); decode as the Rust library, on its own ids
  describe(`${name} tokenizer: transformers' ids, Rust's text`, () => {
    const tok = loadTokenizer(model);
    for (const c of encodeCases[name]) {
      test(label(c.text), () => {
        expect(tok.encode(c.text)).toEqual(c.hf_ids_with_special);
        expect(tok.encode(c.text, { addSpecialTokens: true })).toEqual(c.hf_ids_with_special);
        expect(c.hf_ids_with_special[0]).toBe(c.ids_with_special[0]); // the BOS
        expect(tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.hf_ids_with_special.slice(1));
        expect(tok.decode(c.ids_with_special)).toBe(c.decoded);
        expect(tok.decode(c.ids_with_special, { skipSpecialTokens: true })).toBe(c.decoded_skip_special);
      });
    }
  });
}

describe("TextTokenizer basics", () => {
  test("llama2 special tokens and vocab", () => {
    const t = loadTokenizer("tiny-llama2");
    expect([t.bosToken, t.eosToken, t.vocabSize]).toEqual(["<s>", "</s>", 32000]);
    expect(t.tokenToId("▁The")).toBe(415);
    expect(t.idToToken(415)).toBe("▁The");
    expect(t.tokenToId("</s>")).toBe(2);
    expect(t.tokenToId("no-such-token")).toBeUndefined();
    expect(t.idToToken(32000)).toBeUndefined();
  });

  test("llama3 special tokens and vocab (added tokens counted)", () => {
    const t = loadTokenizer("tiny-llama3");
    expect([t.bosToken, t.eosToken, t.vocabSize]).toEqual(["<|begin_of_text|>", "<|eot_id|>", 128256]);
    expect(t.tokenToId("<|eot_id|>")).toBe(128009);
    expect(t.idToToken(128009)).toBe("<|eot_id|>");
  });

  test("decode of nothing and of out-of-vocabulary ids", () => {
    const t = loadTokenizer("tiny-llama3");
    expect(t.decode([])).toBe("");
    expect(t.decode([9906, 999999, 1917])).toBe("Hello world"); // Rust skips unknown ids too
  });

  test("no clean_up_tokenization_spaces, although llama3's config asks for it", () => {
    const t = loadTokenizer("tiny-llama3");
    const text = "x = a . b ; don 't ?";
    expect(t.decode(t.encode(text, { addSpecialTokens: false }))).toBe(text);
  });

  test("bos/eos given as AddedToken objects", () => {
    const json = JSON.parse(readFileSync(join(modelDir("tiny-llama2"), "tokenizer.json"), "utf8"));
    const t = TextTokenizer.fromJson(json, { bos_token: { content: "<s>", special: true }, eos_token: { content: "</s>" } });
    expect([t.bosToken, t.eosToken]).toEqual(["<s>", "</s>"]);
    expect(TextTokenizer.fromJson(json, {}).bosToken).toBeUndefined();
  });
});

describe("TextTokenizer load errors", () => {
  const base = JSON.parse(readFileSync(join(modelDir("tiny-llama2"), "tokenizer.json"), "utf8"));
  const dirWith = (tokenizerJson: string | null, config?: string) => {
    const dir = mkdtempSync(join(tmpdir(), "tok-"));
    if (tokenizerJson !== null) writeFileSync(join(dir, "tokenizer.json"), tokenizerJson);
    if (config !== undefined) writeFileSync(join(dir, "tokenizer_config.json"), config);
    return dir;
  };

  test("unknown model type names the file and the type", () => {
    const dir = dirWith(JSON.stringify({ ...base, model: { type: "Foo" } }));
    expect(() => TextTokenizer.fromModelDir(dir)).toThrow(`${join(dir, "tokenizer.json")}: unsupported tokenizer model type "Foo"`);
  });

  test("unknown type is refused even where the library would guess one from the vocab", () => {
    const dir = dirWith(JSON.stringify({ ...base, model: { ...base.model, type: "Foo" } }));
    expect(() => TextTokenizer.fromModelDir(dir)).toThrow(/unsupported tokenizer model type "Foo"/);
  });

  test("WordLevel (not implemented by the library) is refused", () => {
    const json = { ...base, model: { type: "WordLevel", vocab: { a: 0 }, unk_token: "a" } };
    expect(() => TextTokenizer.fromJson(json, {})).toThrow(/unsupported tokenizer model type "WordLevel"/);
  });

  test("missing tokenizer.json", () => {
    const dir = dirWith(null);
    expect(() => TextTokenizer.fromModelDir(dir)).toThrow(`cannot read tokenizer file ${join(dir, "tokenizer.json")}`);
  });

  test("corrupt tokenizer.json", () => {
    const dir = dirWith('{"model": {"type": "BPE"');
    expect(() => TextTokenizer.fromModelDir(dir)).toThrow(`tokenizer file ${join(dir, "tokenizer.json")} is not valid JSON`);
  });

  test("tokenizer.json without a model", () => {
    const dir = dirWith('{"version": "1.0"}');
    expect(() => TextTokenizer.fromModelDir(dir)).toThrow(/has no "model" object/);
  });

  test("corrupt tokenizer_config.json is an error, a missing one is not", () => {
    const good = JSON.stringify(base);
    expect(() => TextTokenizer.fromModelDir(dirWith(good, "{oops"))).toThrow(/tokenizer_config.json is not valid JSON/);
    const t = TextTokenizer.fromModelDir(dirWith(good));
    expect(t.encode("Hello world")).toEqual([1, 22557, 1526]);
    expect(t.bosToken).toBeUndefined();
  });
});

test("isSpecial: the added tokens marked special (BOS, EOS), not ordinary vocabulary", () => {
  const t = loadTokenizer("tiny-llama2");
  expect([1, 2, 0].map((id) => t.isSpecial(id))).toEqual([true, true, true]); // <s>, </s>, <unk>
  expect([415, 28705, 32001].map((id) => t.isSpecial(id))).toEqual([false, false, false]);
  const l3 = loadTokenizer("tiny-llama3");
  expect([128000, 128009, 791].map((id) => l3.isSpecial(id))).toEqual([true, true, false]);
});

describe("transformers' prepend scheme for Llama-family tokenizers", () => {
  const dir = join(HF, "models", "tiny-llama2");
  const json = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
  const config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
  const withConfig = (extra: object) => TextTokenizer.fromJson(json, { ...config, ...extra });
  const id = (t: TextTokenizer, token: string) => t.tokenToId(token)!;

  test("legacy (the fixture's config): every section gets its ▁ unless it has one", () => {
    const t = withConfig({});
    expect(t.encode("Hi</s>yes", { addSpecialTokens: false })).toEqual([id(t, "▁Hi"), 2, id(t, "▁yes")]);
  });

  test("legacy: false prepends only to the first section", () => {
    const t = withConfig({ legacy: false });
    expect(t.encode("Hi</s>yes", { addSpecialTokens: false })).toEqual([id(t, "▁Hi"), 2, id(t, "yes")]);
  });

  test("add_prefix_space: false prepends nothing", () => {
    const t = withConfig({ add_prefix_space: false });
    expect(t.encode("Hi", { addSpecialTokens: false })).toEqual([id(t, "Hi")]);
    expect(t.encode(" Hi", { addSpecialTokens: false })).toEqual([id(t, "▁Hi")]);
  });

  test("a tokenizer class transformers does not rebuild keeps tokenizer.json's pipeline", () => {
    const t = withConfig({ tokenizer_class: "PreTrainedTokenizerFast" });
    expect(t.encode(" Hi", { addSpecialTokens: false })).toEqual([id(t, "▁"), id(t, "▁Hi")]);
  });
});
