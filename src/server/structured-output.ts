// Structured-output fields, under every name a vLLM or OpenAI client sends them: OpenAI's
// response_format (json_object, json_schema), vLLM's guided_json / guided_regex / guided_choice /
// guided_grammar and its newer structured_outputs object. One constraint per request; it is compiled
// (cached per schema) before the request is queued, so a bad schema is a 400 naming its field.
import type { EngineService } from "../engine/engine-service.ts";
import type { SamplingParams } from "../engine/sampling.ts";
import { GrammarError, type GrammarSpec } from "../grammar/grammar-spec.ts";
import { badRequest } from "./errors.ts";
import { isObject, type Fields } from "./fields.ts";

export interface StructuredOutput {
  spec: GrammarSpec;
  /** The field that carried it. */
  field: string;
}

const schemaText = (v: unknown, field: string): string => {
  if (typeof v === "string") {
    try {
      if (isObject(JSON.parse(v))) return v;
    } catch {}
  }
  if (isObject(v) || typeof v === "boolean") return JSON.stringify(v);
  throw badRequest(`${field} must be a JSON schema (an object, or a string holding one)`, field);
};
const text = (v: unknown, field: string): string => {
  if (typeof v !== "string" || v.length === 0) throw badRequest(`${field} must be a non-empty string`, field);
  return v;
};
const choices = (v: unknown, field: string): string[] => {
  if (!Array.isArray(v) || v.length === 0 || !v.every((c) => typeof c === "string" && c.length > 0)) {
    throw badRequest(`${field} must be a non-empty list of non-empty strings`, field);
  }
  return v as string[];
};

function responseFormat(f: Fields): StructuredOutput | undefined {
  const rf = f.object("response_format");
  if (!rf) return undefined;
  const type = rf.requiredStr("type");
  if (type === "text") return undefined;
  if (type === "json_object") return { spec: { kind: "json_object" }, field: "response_format" };
  if (type !== "json_schema") throw badRequest(`response_format.type must be text, json_object or json_schema, got "${type}"`, "response_format.type");
  const js = rf.object("json_schema");
  if (!js) throw badRequest("response_format.json_schema is required with type json_schema", "response_format.json_schema");
  js.str("name");
  js.str("description");
  js.bool("strict"); // the grammar holds the output to the schema either way
  const schema = js.raw("schema");
  js.rejectUnread();
  rf.rejectUnread();
  return { spec: { kind: "json_schema", schema: schema === undefined ? "{}" : schemaText(schema, "response_format.json_schema.schema") }, field: "response_format" };
}

function structuredOutputs(f: Fields): StructuredOutput[] {
  const so = f.object("structured_outputs");
  if (!so) return [];
  const found: StructuredOutput[] = [];
  const at = (name: string) => `structured_outputs.${name}`;
  if (so.has("json")) found.push({ spec: { kind: "json_schema", schema: schemaText(so.raw("json"), at("json")) }, field: at("json") });
  if (so.has("regex")) found.push({ spec: { kind: "regex", pattern: text(so.raw("regex"), at("regex")) }, field: at("regex") });
  if (so.has("choice")) found.push({ spec: { kind: "choice", choices: choices(so.raw("choice"), at("choice")) }, field: at("choice") });
  if (so.has("grammar")) found.push({ spec: { kind: "grammar", ebnf: text(so.raw("grammar"), at("grammar")) }, field: at("grammar") });
  if (so.bool("json_object")) found.push({ spec: { kind: "json_object" }, field: at("json_object") });
  so.rejectUnread();
  return found;
}

/** The request's constraint, if any; two at once are refused. */
export function readStructuredOutput(f: Fields): StructuredOutput | undefined {
  const found = [responseFormat(f), ...structuredOutputs(f)].filter((x): x is StructuredOutput => x !== undefined);
  if (f.has("guided_json")) found.push({ spec: { kind: "json_schema", schema: schemaText(f.raw("guided_json"), "guided_json") }, field: "guided_json" });
  if (f.has("guided_regex")) found.push({ spec: { kind: "regex", pattern: text(f.raw("guided_regex"), "guided_regex") }, field: "guided_regex" });
  if (f.has("guided_choice")) found.push({ spec: { kind: "choice", choices: choices(f.raw("guided_choice"), "guided_choice") }, field: "guided_choice" });
  if (f.has("guided_grammar")) found.push({ spec: { kind: "grammar", ebnf: text(f.raw("guided_grammar"), "guided_grammar") }, field: "guided_grammar" });
  // the one engine there is: naming it (or leaving the choice to the server) is fine, another is not
  f.unsupported("guided_decoding_backend", (v) => v === "xgrammar" || v === "auto");
  if (found.length > 1) throw badRequest(`give one structured-output constraint, got ${found.map((x) => x.field).join(" and ")}`, found[1].field);
  return found[0];
}

/** The params with the constraint compiled in (a GrammarError becomes a 400 naming the field). */
export async function constrained(service: EngineService, params: SamplingParams, so: StructuredOutput | undefined): Promise<SamplingParams> {
  if (!so) return params;
  // the grammar ends the text with a stop token: one that can never be sampled would never let it end
  if (params.ignoreEos) throw badRequest(`ignore_eos cannot be combined with ${so.field}: the constrained text ends with EOS`, "ignore_eos");
  if ((params.minTokens ?? 0) > 0) throw badRequest(`min_tokens cannot be combined with ${so.field}: it would forbid the EOS the grammar may require`, "min_tokens");
  try {
    return { ...params, grammar: await service.model.grammar.compile(so.spec, so.field) };
  } catch (e) {
    if (e instanceof GrammarError) throw badRequest(e.message, e.field);
    throw e;
  }
}
