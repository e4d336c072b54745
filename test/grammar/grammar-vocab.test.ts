// What the grammar engine is told of each fixture tokenizer: its kind, its tokens by id, and which
// tokens hold a raw control character (JSON constraints drop those).
import { describe, expect, test } from "bun:test";
import { controlCharTokens, grammarVocab } from "../../src/grammar/grammar-vocab.ts";
import { TextTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { modelDir } from "../helpers/fixtures.ts";
import { readModelConfig } from "../../src/model/config.ts";

const bit = (mask: Uint32Array, id: number) => ((mask[id >> 5] >>> (id & 31)) & 1) === 1;

describe("grammarVocab and controlCharTokens on the fixture tokenizers", () => {
  for (const [name, type, prepend] of [["tiny-llama2", "byte_fallback", true], ["tiny-mistral", "byte_fallback", true], ["tiny-llama3", "byte_level", false]] as const) {
    test(`${name}: ${type}, every id's token, control characters flagged where (and only where) the text has one`, () => {
      const tok = TextTokenizer.fromModelDir(modelDir(name));
      const config = readModelConfig(modelDir(name));
      const v = grammarVocab(tok.definition.tokenizerJson as Record<string, unknown>, config.vocabSize);
      expect(`${v.vocabType} ${v.prependSpace}`).toBe(`${type} ${prepend}`);
      expect(v.vocabSize).toBe(config.vocabSize);
      // the ids of "{" and of a newline round-trip through the token list
      const brace = tok.encode("{", { addSpecialTokens: false }).at(-1)!;
      expect(tok.decode([brace]).trim()).toBe("{");
      expect(v.tokens[brace].length).toBeGreaterThan(0);
      const mask = controlCharTokens(v);
      const newline = tok.encode("a\nb", { addSpecialTokens: false }).find((id) => tok.decode([id]).includes("\n"))!;
      expect(bit(mask, newline)).toBe(true);
      // against the tokenizer's own decoding, over every token that decodes alone to text
      let flagged = 0, checked = 0;
      for (let id = 0; id < v.tokens.length; id += 7) {
        if (tok.isSpecial(id)) continue;
        const text = tok.decode([id]);
        if (text.includes("\uFFFD")) continue; // a partial UTF-8 sequence: not text on its own
        checked++;
        const control = /[\u0000-\u001f]/.test(text);
        if (control) flagged++;
        expect(`${id} ${JSON.stringify(text)} ${bit(mask, id)}`).toBe(`${id} ${JSON.stringify(text)} ${control}`);
      }
      expect(checked).toBeGreaterThan(1000);
      expect(flagged).toBeGreaterThan(0);
    });
  }
});
