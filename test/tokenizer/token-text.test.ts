// Logprob tokens as OpenAI lists them: the text a token reads as inside a sequence (its leading
// space kept) and its exact bytes (a byte token's single byte, even where it is no character alone).
import { expect, test } from "bun:test";
import { join } from "node:path";
import { tokenBytes, tokenText } from "../../src/tokenizer/token-text.ts";
import { TextTokenizer } from "../../src/tokenizer/tokenizer.ts";

const HF = join(import.meta.dir, "../fixtures/hf/models");
const llama2 = TextTokenizer.fromModelDir(join(HF, "tiny-llama2"));
const llama3 = TextTokenizer.fromModelDir(join(HF, "tiny-llama3"));
const utf8 = (s: string) => [...new TextEncoder().encode(s)];

test("SentencePiece (Llama 2): ▁ reads as a space; byte tokens are their byte", () => {
  const paris = llama2.tokenToId("▁Paris")!;
  expect(tokenText(llama2, paris)).toBe(" Paris");
  expect(tokenBytes(llama2, paris)).toEqual(utf8(" Paris"));
  expect(tokenText(llama2, llama2.tokenToId("ing")!)).toBe("ing");
  expect(tokenBytes(llama2, llama2.tokenToId("<0x0A>")!)).toEqual([10]);
  expect(tokenBytes(llama2, llama2.tokenToId("<0xE6>")!)).toEqual([0xe6]); // the first byte of a 3-byte character
});

test("byte-level (Llama 3): Ġ reads as a space; a partial character's token is its raw bytes", () => {
  const paris = llama3.tokenToId("ĠParis")!;
  expect(tokenText(llama3, paris)).toBe(" Paris");
  expect(tokenBytes(llama3, paris)).toEqual(utf8(" Paris"));
  // "日本" splits into byte-level tokens; their bytes, concatenated, are the text's UTF-8
  const ids = llama3.encode("日本語", { addSpecialTokens: false });
  expect(ids.flatMap((id) => tokenBytes(llama3, id))).toEqual(utf8("日本語"));
  expect(tokenBytes(llama3, 128009)).toEqual(utf8(llama3.idToToken(128009)!)); // a special token: its text
});
