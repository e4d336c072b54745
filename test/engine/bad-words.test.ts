// vLLM's bad_words: the token completing a bad word is never sampled; a one-token word never
// appears, and a two-token word's second token is refused only right after its first.
import { describe, expect, test } from "bun:test";
import { badWordTokenIds, bannedByBadWords } from "../../src/tokenizer/bad-words.ts";
import { greedyParams, loadFixtureModel, readReference } from "../helpers/fixtures.ts";

describe("bad_words", async () => {
  const model = await loadFixtureModel("tiny-llama2", {});
  const { engine } = model;
  const prompt = (await readReference("tiny-llama2")).cases[0].prompt_ids;
  const run = (badWords?: number[][]) => {
    const seq = engine.add({ promptIds: prompt, adapter: null, params: { ...greedyParams(10), ...(badWords ? { badWords } : {}) } });
    engine.runToCompletion();
    return seq.outputs.map((t) => t.id);
  };
  const plain = run();

  test("bannedByBadWords: a word's last token where its other tokens end the output", () => {
    const words = [[7], [1, 2], [3, 4, 5]];
    expect(bannedByBadWords(words, [])).toEqual([7]);
    expect(bannedByBadWords(words, [9, 1])).toEqual([7, 2]);
    expect(bannedByBadWords(words, [3, 4])).toEqual([7, 5]);
    expect(bannedByBadWords(words, [4, 3])).toEqual([7]);
  });

  test("a one-token word never appears; the greedy run takes another token instead", () => {
    const out = run([[plain[0]]]);
    expect(out).not.toContain(plain[0]);
    expect(out[0]).not.toBe(plain[0]);
  });

  test("a two-token word: the run equals the plain one until the word would complete, then turns", () => {
    const out = run([[plain[2], plain[3]]]);
    expect(out.slice(0, 3)).toEqual(plain.slice(0, 3));
    expect(out[3]).not.toBe(plain[3]);
  });

  test("badWordTokenIds: a word and its spaced form, as the tokenizer spells them", () => {
    const ids = badWordTokenIds(model.tokenizer, ["hello", " world"]);
    expect(ids[0]).toEqual(model.tokenizer.encode("hello", { addSpecialTokens: false }));
    expect(ids.every((w) => w.length > 0)).toBe(true);
    expect(ids.map((w) => model.tokenizer.decode(w).trim())).toContain("world");
  });
});
