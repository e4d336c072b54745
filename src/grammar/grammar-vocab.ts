// What the grammar engine needs to know of a HF tokenizer: every token's string by id, and how the
// strings map to text (SentencePiece byte fallback, GPT-2 byte-level, or raw).
import type { JsonObject } from "../tokenizer/tokenizer.ts";

export type VocabType = "byte_fallback" | "byte_level" | "raw";

export interface GrammarVocab {
  /** Token strings as tokenizer.json spells them, by id ("" where an id has none). */
  tokens: string[];
  vocabType: VocabType;
  /** The tokenizer prepends "▁" to the text (SentencePiece), so a first token's leading space is not text. */
  prependSpace: boolean;
  /** Rows of the model's logits (config.json's vocab_size, may exceed the tokenizer's). */
  vocabSize: number;
}

const has = (node: unknown, type: string): boolean => {
  if (!node || typeof node !== "object") return false;
  const o = node as JsonObject;
  if (o.type === type) return true;
  return Object.values(o).some((v) => (Array.isArray(v) ? v.some((x) => has(x, type)) : false));
};

export function grammarVocab(tokenizerJson: JsonObject, vocabSize: number): GrammarVocab {
  const model = (tokenizerJson.model ?? {}) as JsonObject;
  const tokens: string[] = [];
  if (Array.isArray(model.vocab)) (model.vocab as [string, number][]).forEach(([piece], id) => (tokens[id] = piece)); // Unigram
  else for (const [piece, id] of Object.entries((model.vocab ?? {}) as Record<string, number>)) tokens[id] = piece;
  for (const t of (tokenizerJson.added_tokens ?? []) as { id: number; content: string }[]) tokens[t.id] = t.content;
  for (let i = 0; i < tokens.length; i++) tokens[i] ??= "";
  tokens.length = Math.min(tokens.length, vocabSize); // ids past the logits can never be sampled
  const decoder = tokenizerJson.decoder;
  const vocabType: VocabType = has(decoder, "ByteFallback") || model.byte_fallback === true ? "byte_fallback"
    : has(decoder, "ByteLevel") || has(tokenizerJson.pre_tokenizer, "ByteLevel") ? "byte_level" : "raw";
  const prependSpace = has(tokenizerJson.normalizer, "Prepend") || has(tokenizerJson.pre_tokenizer, "Metaspace");
  return { tokens, vocabType, prependSpace, vocabSize };
}

// GPT-2's byte-level alphabet writes bytes 0x00-0x20 as U+0100-U+0120 (in order): 0x00-0x1F are U+0100-U+011F
const BYTE_LEVEL_CONTROL = /[\u0100-\u011f]/;
const BYTE_FALLBACK_CONTROL = /^<0x[01][0-9A-Fa-f]>$/;
const RAW_CONTROL = /[\u0000-\u001f]/;

/**
 * Tokens whose text holds a control character (U+0000-U+001F), as a bitmask over the vocabulary.
 * JSON forbids them unescaped, yet xgrammar's JSON string rule lets most through: JSON constraints
 * clear these bits (compact JSON has no raw control character anywhere).
 */
export function controlCharTokens(v: GrammarVocab): Uint32Array {
  const mask = new Uint32Array(Math.ceil(v.vocabSize / 32));
  const test = v.vocabType === "byte_level" ? BYTE_LEVEL_CONTROL : v.vocabType === "byte_fallback" ? null : RAW_CONTROL;
  v.tokens.forEach((t, id) => {
    const control = test ? test.test(t) : BYTE_FALLBACK_CONTROL.test(t) || RAW_CONTROL.test(t);
    if (control) mask[id >> 5] |= 1 << (id & 31);
  });
  return mask;
}
