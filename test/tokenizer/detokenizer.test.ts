import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { IncrementalDetokenizer } from "../../src/tokenizer/detokenizer.ts";
import { TextTokenizer } from "../../src/tokenizer/tokenizer.ts";

const HF = join(import.meta.dir, "../fixtures/hf");
interface EncodeCase { text: string; ids_with_special: number[]; ids: number[] }
const encodeCases: Record<string, EncodeCase[]> = JSON.parse(readFileSync(join(HF, "tokenizer/encode.json"), "utf8"));
const MODELS: Record<string, string> = { llama2: "tiny-llama2", llama3: "tiny-llama3" };
const tokenizers: Record<string, TextTokenizer> = {};
for (const [name, model] of Object.entries(MODELS)) tokenizers[name] = TextTokenizer.fromModelDir(join(HF, "models", model));
const label = (text: string) => JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text);

function stream(tok: TextTokenizer, ids: number[], skipSpecialTokens: boolean) {
  const d = new IncrementalDetokenizer(tok, { skipSpecialTokens });
  const pieces = ids.map((id) => d.push(id));
  const tail = d.flush();
  return { pieces, tail, text: d.text };
}

for (const [name, tok] of Object.entries(tokenizers)) {
  describe(`${name} streaming equals decode`, () => {
    for (const c of encodeCases[name]) {
      test(label(c.text), () => {
        for (const ids of [c.ids_with_special, c.ids]) {
          for (const skip of [false, true]) {
            const { pieces, tail, text } = stream(tok, ids, skip);
            const full = tok.decode(ids, { skipSpecialTokens: skip });
            expect(pieces.join("") + tail).toBe(full);
            expect(text).toBe(full);
            // None of the fixture texts holds U+FFFD, so no piece may either.
            for (const p of [...pieces, tail]) expect(p).not.toContain("\uFFFD");
          }
        }
      });
    }
  });
}

describe("IncrementalDetokenizer", () => {
  const llama2 = tokenizers.llama2;
  const llama3 = tokenizers.llama3;

  test("multi-byte characters split across byte tokens are held back, not broken", () => {
    for (const [tok, text] of [[llama2, "emoji 🚀✨👩‍👩‍👧‍👦 and 日本語"], [llama3, "emoji 🚀✨👩‍👩‍👧‍👦 and Ṫḧḭṡ"]] as const) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      // The per-token decode does break characters, so this case exercises the hold-back.
      expect(ids.some((id) => tok.decode([id]).includes("\uFFFD"))).toBe(true);
      const { pieces, tail } = stream(tok, ids, false);
      expect(pieces.filter((p) => p === "").length).toBeGreaterThan(0);
      for (const p of pieces) expect(p).not.toContain("\uFFFD");
      expect(pieces.join("") + tail).toBe(text);
    }
  });

  test("SentencePiece: the standalone decode drops the first token's leading space", () => {
    const ids = llama2.encode("Hello world again", { addSpecialTokens: false }); // ▁Hello ▁world ▁again
    const { pieces } = stream(llama2, ids, false);
    expect(pieces).toEqual(["Hello", " world", " again"]);
  });

  test("a truncated character is flushed as U+FFFD, like decode", () => {
    const all = llama2.encode("ok 👩", { addSpecialTokens: false }); // 👩 is 4 byte-fallback tokens
    expect(all.slice(-4).map((id) => llama2.idToToken(id))).toEqual(["<0xF0>", "<0x9F>", "<0x91>", "<0xA9>"]);
    const ids = all.slice(0, -2);
    const d = new IncrementalDetokenizer(llama2);
    const pushed = ids.map((id) => d.push(id)).join("");
    expect(pushed).not.toContain("\uFFFD");
    expect(pushed + d.flush()).toBe(llama2.decode(ids));
    expect(d.text).toEndWith("\uFFFD");
  });

  test("special tokens: shown or skipped as decode does", () => {
    const ids = [...llama3.encode("Hi there!", { addSpecialTokens: false }), 128009];
    expect(stream(llama3, ids, false).text).toBe("Hi there!<|eot_id|>");
    expect(stream(llama3, ids, true).text).toBe("Hi there!");
  });

  test("random id sequences (byte tokens, specials, spaces) stream exactly", () => {
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (const [tok, bytes, specials, space] of [[llama2, [3, 259], [0, 3], 28705], [llama3, [0, 256], [128000, 128012], 220]] as const) {
      for (let trial = 0; trial < 150; trial++) {
        const ids = Array.from({ length: 1 + Math.floor(rnd() * 30) }, () => {
          const r = rnd();
          const pick = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo));
          return r < 0.35 ? pick(bytes[0], bytes[1]) : r < 0.45 ? pick(specials[0], specials[1]) : r < 0.55 ? space : pick(0, tok.vocabSize);
        });
        for (const skip of [false, true]) expect(stream(tok, ids, skip).text).toBe(tok.decode(ids, { skipSpecialTokens: skip }));
      }
    }
  });

  test("work per token is bounded (a window, not the whole sequence)", () => {
    const counting = Object.create(llama3) as TextTokenizer;
    let decodedIds = 0;
    counting.decode = (ids, opts) => ((decodedIds += ids.length), llama3.decode(ids, opts));
    const ids = llama3.encode("The quick brown fox jumps over the lazy dog. ".repeat(200), { addSpecialTokens: false });
    const d = new IncrementalDetokenizer(counting);
    for (const id of ids) d.push(id);
    expect(d.text + d.flush()).toBe(llama3.decode(ids));
    expect(decodedIds / ids.length).toBeLessThan(8);
  });
});

describe("after a prompt: the text the tokens add to it (vLLM's offsets)", () => {
  for (const [name, tok] of Object.entries(tokenizers)) {
    test(`${name}: prompt text + streamed text = the decode of both; a first token's space is kept`, () => {
      const prompt = tok.encode("The capital of France is");
      for (const c of encodeCases[name].slice(0, 24)) {
        const gen = c.ids; // any ids stand in for generated ones
        const d = new IncrementalDetokenizer(tok, { skipSpecialTokens: true, promptIds: prompt });
        const streamed = gen.map((id) => d.push(id)).join("") + d.flush();
        const whole = tok.decode([...prompt, ...gen], { skipSpecialTokens: true });
        expect(tok.decode(prompt, { skipSpecialTokens: true }) + streamed).toBe(whole);
      }
    });
  }

  test("llama2: \" Paris\" after \"is\", where the standalone decode says \"Paris\"", () => {
    const tok = tokenizers.llama2;
    const paris = tok.encode(" Paris", { addSpecialTokens: false });
    const d = new IncrementalDetokenizer(tok, { skipSpecialTokens: true, promptIds: tok.encode("The capital of France is") });
    expect(paris.map((id) => d.push(id)).join("") + d.flush()).toBe(" Paris");
    expect(tok.decode(paris)).toBe("Paris");
  });
});
