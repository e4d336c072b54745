// vLLM's bad_words: each word as the token sequences it may appear as (on its own and after a
// space); a sequence's last token is banned wherever the tokens before it end the output so far.
import type { TextTokenizer } from "./tokenizer.ts";

export function badWordTokenIds(tokenizer: Pick<TextTokenizer, "encode">, words: readonly string[]): number[][] {
  const out: number[][] = [];
  for (const word of words) {
    const bare = tokenizer.encode(word.trimStart(), { addSpecialTokens: false });
    if (bare.length) out.push(bare);
    const spaced = tokenizer.encode(` ${word.trimStart()}`, { addSpecialTokens: false });
    // as vLLM: the spaced form too where it is another token sequence of the same length
    if (spaced.length && spaced.length === bare.length && spaced[0] !== bare[0]) out.push(spaced);
  }
  return out;
}

/** The tokens that would complete a bad word after `outputs`. */
export function bannedByBadWords(badWords: readonly number[][], outputs: readonly number[]): number[] {
  const banned: number[] = [];
  for (const word of badWords) {
    const prefix = word.length - 1;
    if (prefix > outputs.length) continue;
    let match = true;
    for (let i = 0; i < prefix && match; i++) match = outputs[outputs.length - prefix + i] === word[i];
    if (match) banned.push(word[prefix]);
  }
  return banned;
}
