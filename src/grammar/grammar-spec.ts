// A request's structured-output constraint, in one form whichever API field carried it
// (response_format, guided_json / guided_regex / guided_choice / guided_grammar, structured_outputs).
export type GrammarSpec =
  | { kind: "json_object" }
  | { kind: "json_schema"; schema: string }
  | { kind: "regex"; pattern: string }
  | { kind: "choice"; choices: string[] }
  | { kind: "grammar"; ebnf: string };

/** The cache key of a spec's compiled grammar (per tokenizer: each model has its own grammar thread). */
export const grammarKey = (spec: GrammarSpec): string => JSON.stringify(spec);

/** A compiled grammar a sequence can be constrained by. */
export interface GrammarRef {
  key: string;
  /** The API field that asked for it (named by errors). */
  field: string;
}

export class GrammarError extends Error {
  override name = "GrammarError";
  constructor(message: string, readonly field: string) {
    super(message);
  }
}

/** Regex alternation of literal choices: each escaped, tried as a whole. */
export function choiceRegex(choices: readonly string[]): string {
  return choices.map((c) => `(${c.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&")})`).join("|");
}
