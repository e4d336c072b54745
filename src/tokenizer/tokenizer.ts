import { Tokenizer } from "@huggingface/tokenizers";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { withTransformersPipeline } from "./transformers-pipeline.ts";

/** Model types that @huggingface/tokenizers implements (it has no WordLevel). */
const SUPPORTED_MODEL_TYPES = new Set(["BPE", "Unigram", "WordPiece"]);

export type JsonObject = Record<string, unknown>;

export interface TokenizerDefinition {
  tokenizerJson: object;
  config: object;
  /** Names the file in error messages. */
  source: string;
}

/** tokenizer_config.json holds special tokens either as a string or as an AddedToken `{content}`. */
export function specialTokenString(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof (value as JsonObject).content === "string") {
    return (value as JsonObject).content as string;
  }
  return undefined;
}

function readJson(path: string, what: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${what} ${path} is not a JSON object`);
  }
  return value as JsonObject;
}

/**
 * A HF `tokenizer.json` tokenizer. encode gives the ids transformers' AutoTokenizer gives (for the
 * Llama family its own pre-tokenizer: transformers-pipeline.ts); decode follows the Rust
 * `tokenizers` library, without `clean_up_tokenization_spaces` (lossy, and it would break streaming).
 * One known difference from Rust: an invalid run of byte-fallback tokens decodes with WHATWG
 * replacement (`[C3 A9 F0]` -> "é\uFFFD") where Rust gives one U+FFFD per byte of the whole run
 * ("\uFFFD\uFFFD\uFFFD"). WHATWG's is prefix-stable, which exact streaming relies on.
 */
export class TextTokenizer {
  private readonly tok: Tokenizer;
  readonly config: JsonObject;
  private readonly vocabLen: number;
  private longestToken: number | undefined;
  private special: Set<number> | undefined;
  /** What it was built from, so a tokenizer thread can build the same one. */
  readonly definition: TokenizerDefinition;

  private constructor(tok: Tokenizer, config: JsonObject, definition: TokenizerDefinition) {
    this.tok = tok;
    this.config = config;
    this.definition = definition;
    this.vocabLen = tok.get_vocab(true).size;
  }

  /** Loads `dir/tokenizer.json` (required) and `dir/tokenizer_config.json` (optional). */
  static fromModelDir(dir: string): TextTokenizer {
    const jsonPath = join(dir, "tokenizer.json");
    const tokenizerJson = readJson(jsonPath, "tokenizer file");
    const configPath = join(dir, "tokenizer_config.json");
    const config = existsSync(configPath) ? readJson(configPath, "tokenizer config") : {};
    return TextTokenizer.fromJson(tokenizerJson, config, jsonPath);
  }

  /** `source` names the file in error messages. */
  static fromJson(tokenizerJson: object, tokenizerConfig: object = {}, source = "tokenizer.json"): TextTokenizer {
    const tj = tokenizerJson as JsonObject;
    const model = tj.model as JsonObject | null | undefined;
    if (!model || typeof model !== "object") {
      throw new Error(`${source}: has no "model" object; is this a HF tokenizer.json?`);
    }
    if (typeof model.type !== "string" || !SUPPORTED_MODEL_TYPES.has(model.type)) {
      throw new Error(
        `${source}: unsupported tokenizer model type ${JSON.stringify(model.type)} ` +
          `(supported: ${[...SUPPORTED_MODEL_TYPES].join(", ")})`,
      );
    }
    // The library requires every pipeline key; Rust tokenizers allows them to be absent.
    const full = withTransformersPipeline({ normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...tj }, tokenizerConfig as JsonObject);
    try {
      const definition = { tokenizerJson, config: tokenizerConfig, source };
      return new TextTokenizer(new Tokenizer(full, tokenizerConfig), tokenizerConfig as JsonObject, definition);
    } catch (e) {
      throw new Error(`${source}: cannot build tokenizer: ${(e as Error).message}`);
    }
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Ids outside the vocabulary are skipped, as in Rust `tokenizers`. */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    const known = ids.filter((id) => Number.isInteger(id) && id >= 0 && this.tok.id_to_token(id) !== undefined);
    if (known.length === 0) return ""; // the library throws on an empty list
    return this.tok.decode(known, {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  get bosToken(): string | undefined {
    return specialTokenString(this.config.bos_token);
  }

  get eosToken(): string | undefined {
    return specialTokenString(this.config.eos_token);
  }

  /**
   * The most UTF-8 bytes one token's vocabulary string holds: a bound on the input bytes one token
   * can cover (normalizers only lengthen text: " " becomes "▁"), so a text of B bytes has at least
   * B / maxTokenBytes tokens, known before tokenizing it.
   */
  get maxTokenBytes(): number {
    if (this.longestToken === undefined) {
      let most = 1;
      for (const token of this.tok.get_vocab(true).keys()) most = Math.max(most, Buffer.byteLength(token));
      this.longestToken = most;
    }
    return this.longestToken;
  }

  /** An added token marked special (BOS, EOS, chat markers): what `skipSpecialTokens` drops. */
  isSpecial(id: number): boolean {
    this.special ??= new Set(((this.definition.tokenizerJson as JsonObject).added_tokens as JsonObject[] | undefined ?? [])
      .filter((t) => t.special === true && typeof t.id === "number").map((t) => t.id as number));
    return this.special.has(id);
  }

  /** Model vocabulary plus added tokens (HF `len(tokenizer)`). */
  get vocabSize(): number {
    return this.vocabLen;
  }
}
