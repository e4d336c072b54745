// The tokenizer threads give the ids transformers gives (the fixtures' encode cases, every one sent
// to a thread) and keep each reply with its request when many are in flight.
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TextTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { INLINE_BELOW_CHARS, TokenizerPool } from "../../src/tokenizer/tokenizer-pool.ts";

const HF = join(import.meta.dir, "../fixtures/hf");
interface EncodeCase { text: string; hf_ids_with_special: number[] }
const encodeCases: Record<string, EncodeCase[]> = JSON.parse(readFileSync(join(HF, "tokenizer/encode.json"), "utf8"));
const pools: TokenizerPool[] = [];
afterAll(() => pools.forEach((p) => p.close()));

function pool(model: string, size: number, inlineBelow?: number): { tok: TextTokenizer; pool: TokenizerPool } {
  const tok = TextTokenizer.fromModelDir(join(HF, "models", model));
  const p = new TokenizerPool(tok, size, inlineBelow);
  pools.push(p);
  return { tok, pool: p };
}

for (const [name, model] of Object.entries({ llama2: "tiny-llama2", llama3: "tiny-llama3" })) {
  describe(`${name} on tokenizer threads`, () => {
    test("every fixture string, with and without special tokens, all in flight at once over two threads", async () => {
      const { pool: p } = pool(model, 2, 0); // nothing inline: every text goes to a thread
      const cases = encodeCases[name];
      const [withSpecial, without] = await Promise.all([
        Promise.all(cases.map((c) => p.encode(c.text))),
        Promise.all(cases.map((c) => p.encode(c.text, { addSpecialTokens: false }))),
      ]);
      expect(withSpecial).toEqual(cases.map((c) => c.hf_ids_with_special));
      expect(without).toEqual(cases.map((c) => c.hf_ids_with_special.slice(1)));
    });

    test("long texts equal inline encoding; short ones stay inline", async () => {
      const { tok, pool: p } = pool(model, 2);
      const texts = encodeCases[name].map((c, i) => `${i} ${c.text} `).map((s) => s.repeat(Math.ceil(INLINE_BELOW_CHARS / s.length)));
      expect(texts.every((t) => t.length >= INLINE_BELOW_CHARS)).toBe(true);
      expect(await Promise.all(texts.map((t) => p.encode(t)))).toEqual(texts.map((t) => tok.encode(t)));
      expect(p.busy).toBe(0);
      const short = p.encode("Hello");
      expect(p.busy).toBe(0); // answered without a thread
      expect(await short).toEqual(tok.encode("Hello"));
    });
  });
}

test("size 0 encodes everything inline", async () => {
  const { tok, pool: p } = pool("tiny-llama3", 0);
  const long = "word ".repeat(INLINE_BELOW_CHARS);
  const ids = p.encode(long);
  expect(p.busy).toBe(0);
  expect(await ids).toEqual(tok.encode(long));
});
