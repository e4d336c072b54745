// transformers builds a Llama-family sentencepiece tokenizer's pre-processing from the tokenizer
// class, not from tokenizer.json: no normalizer, and a Metaspace pre-tokenizer that turns spaces
// into "▁" and adds one "▁" in front of the text (of each section between special tokens, or of the
// first only) unless the text already starts with one. tokenizer.json's legacy normalizer prepends
// "▁" unconditionally, so " Hello" would become "▁▁Hello" there and "▁Hello" in transformers. A
// prompt must become the ids the adapter was trained on, so the pipeline is rewritten to
// transformers' where the class and the config say it applies.
import type { JsonObject } from "./tokenizer.ts";

const LLAMA_CLASSES = new Set(["LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast"]);

/** tokenizer.json's legacy Llama normalizer: Prepend("▁") then Replace(" " → "▁"). */
function isLegacyLlamaNormalizer(n: unknown): boolean {
  const steps = (n as JsonObject | null)?.normalizers as JsonObject[] | undefined;
  if ((n as JsonObject | null)?.type !== "Sequence" || !Array.isArray(steps) || steps.length !== 2) return false;
  const [prepend, replace] = steps;
  return prepend.type === "Prepend" && prepend.prepend === "▁" &&
    replace.type === "Replace" && (replace.pattern as JsonObject)?.String === " " && replace.content === "▁";
}

/** transformers' prepend scheme from `add_prefix_space` and `legacy` (its `_get_prepend_scheme`). */
export function prependScheme(config: JsonObject): "always" | "first" | "never" {
  if (config.add_prefix_space === false) return "never";
  return config.legacy === false ? "first" : "always";
}

/** The tokenizer.json to build: transformers' pipeline where it differs, else `tj` unchanged. */
export function withTransformersPipeline(tj: JsonObject, config: JsonObject): JsonObject {
  const model = tj.model as JsonObject;
  const applies = LLAMA_CLASSES.has(String(config.tokenizer_class)) && model.type === "BPE" &&
    isLegacyLlamaNormalizer(tj.normalizer) && (tj.pre_tokenizer === null || tj.pre_tokenizer === undefined);
  if (!applies) return tj;
  return { ...tj, normalizer: null, pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: prependScheme(config), split: false } };
}
