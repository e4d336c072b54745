// One token as OpenAI's logprobs list it: its text as it reads inside a sequence (the leading space
// a SentencePiece "▁" or a byte-level "Ġ" stands for kept: " Paris", not "Paris"), and its exact
// bytes (a byte token's one byte, though that byte alone is no character).
import type { JsonObject, TextTokenizer } from "./tokenizer.ts";

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

// GPT-2's byte-level alphabet: each byte is a printable character, read back here
let byteOfChar: Map<string, number> | undefined;
function byteLevelTable(): Map<string, number> {
  if (byteOfChar) return byteOfChar;
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  byteOfChar = new Map();
  let extra = 0;
  for (let b = 0; b < 256; b++) byteOfChar.set(String.fromCodePoint(printable(b) ? b : 256 + extra++), b);
  return byteOfChar;
}

function isByteLevel(tokenizer: TextTokenizer): boolean {
  const decoder = (tokenizer.definition.tokenizerJson as JsonObject).decoder as JsonObject | null | undefined;
  const types = decoder?.type === "Sequence" ? ((decoder.decoders as JsonObject[]) ?? []).map((d) => d.type) : [decoder?.type];
  return types.includes("ByteLevel");
}

const anchors = new WeakMap<TextTokenizer, { ids: number[]; text: string }>();

/** The token's text after another token (so a word-start marker reads as its space). */
export function tokenText(tokenizer: TextTokenizer, id: number): string {
  let a = anchors.get(tokenizer);
  if (!a) {
    const ids = tokenizer.encode("a", { addSpecialTokens: false });
    anchors.set(tokenizer, (a = { ids, text: tokenizer.decode(ids) }));
  }
  const both = tokenizer.decode([...a.ids, id]);
  return both.startsWith(a.text) ? both.slice(a.text.length) : tokenizer.decode([id]);
}

/** The exact bytes the token stands for. */
export function tokenBytes(tokenizer: TextTokenizer, id: number): number[] {
  const piece = tokenizer.idToToken(id) ?? "";
  const byte = BYTE_TOKEN.exec(piece);
  if (byte) return [parseInt(byte[1], 16)];
  if (isByteLevel(tokenizer) && !tokenizer.isSpecial(id)) {
    const table = byteLevelTable();
    const bytes = [...piece].map((ch) => table.get(ch));
    if (bytes.every((b) => b !== undefined)) return bytes as number[];
  }
  return [...new TextEncoder().encode(tokenText(tokenizer, id))];
}
