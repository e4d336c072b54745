import type { TextTokenizer } from "./tokenizer.ts";

const REPLACEMENT = "\uFFFD";
/** Prompt tokens kept as context for the first generated ones (vLLM keeps 5). */
const PROMPT_CONTEXT = 5;

/**
 * Streams the text of generated tokens. Without a prompt the pieces concatenate to exactly
 * `tokenizer.decode(generatedIds, { skipSpecialTokens })`; with one they are the text the tokens
 * add after it, as vLLM streams them: `decode(tail + generated) - decode(tail)` for the prompt's
 * last few tokens, so a SentencePiece token's leading space is kept ("is" → " Paris"), and
 * prompt + completion reads as one text.
 *
 * Technique (vLLM/TGI): keep a window of token ids starting at the last clean boundary
 * (`prefixStart`), decode the window with and without the tokens not yet emitted (`readStart` on),
 * and emit the difference. Decoding a window rather than single tokens keeps context-dependent
 * decoders right (SentencePiece's leading-space strip applies to both decodes alike; byte-fallback
 * and byte-level tokens complete characters across tokens). A tail ending in U+FFFD is an
 * unfinished UTF-8 character: hold it back until more tokens arrive or `flush()`.
 */
export class IncrementalDetokenizer {
  private readonly tokenizer: TextTokenizer;
  private readonly skipSpecialTokens: boolean;
  private ids: number[] = [];
  private prefixStart = 0; // window start, relative to `ids`
  private readStart = 0; // first id whose text has not been emitted
  private emitted = "";

  /** `promptIds` seeds the window with the prompt's last PROMPT_CONTEXT tokens (vLLM's offsets). */
  constructor(tokenizer: TextTokenizer, opts: { skipSpecialTokens?: boolean; promptIds?: readonly number[] } = {}) {
    this.tokenizer = tokenizer;
    this.skipSpecialTokens = opts.skipSpecialTokens ?? false;
    this.ids = opts.promptIds ? opts.promptIds.slice(-PROMPT_CONTEXT) : [];
    this.readStart = this.ids.length;
  }

  push(id: number): string {
    this.ids.push(id);
    const { prefix, full } = this.decodeWindow();
    if (full.length <= prefix.length || full.endsWith(REPLACEMENT)) return "";
    return this.advance(full.slice(prefix.length));
  }

  /** Emits what is held back (an unfinished character decodes to U+FFFD, as in `decode`). */
  flush(): string {
    const { prefix, full } = this.decodeWindow();
    if (full.length <= prefix.length) return "";
    return this.advance(full.slice(prefix.length));
  }

  /** All text emitted so far. */
  get text(): string {
    return this.emitted;
  }

  private decodeWindow(): { prefix: string; full: string } {
    const opts = { skipSpecialTokens: this.skipSpecialTokens };
    return {
      prefix: this.tokenizer.decode(this.ids.slice(this.prefixStart, this.readStart), opts),
      full: this.tokenizer.decode(this.ids.slice(this.prefixStart), opts),
    };
  }

  private advance(piece: string): string {
    this.prefixStart = this.readStart;
    this.readStart = this.ids.length;
    // Drop ids before the window so memory stays bounded on long generations.
    if (this.prefixStart > 0) {
      this.ids = this.ids.slice(this.prefixStart);
      this.readStart -= this.prefixStart;
      this.prefixStart = 0;
    }
    this.emitted += piece;
    return piece;
  }
}
