// The `messages` form of LMI's /invocations answers in the chat-completions shape, and LMI clients
// send their sampling settings in `parameters` with LMI's names. They are carried over to the chat
// fields with LMI's meaning (greedy unless do_sample); one the chat route has no use for is refused.
import { badRequest } from "./errors.ts";
import { Fields, type JsonObject } from "./fields.ts";

/** LMI parameter → chat field; do_sample is read with temperature. */
const RENAMED: Record<string, string> = {
  max_new_tokens: "max_tokens", top_p: "top_p", top_k: "top_k", seed: "seed", stop_sequences: "stop", ignore_eos_token: "ignore_eos",
  repetition_penalty: "repetition_penalty", presence_penalty: "presence_penalty", frequency_penalty: "frequency_penalty", min_p: "min_p",
  guided_json: "guided_json", guided_regex: "guided_regex", guided_choice: "guided_choice", guided_grammar: "guided_grammar",
};
const READ_WITH_TEMPERATURE = new Set(["do_sample", "temperature"]);

export function chatBodyWithParameters(body: JsonObject): JsonObject {
  // `adapters` and `model` were read by /invocations itself
  const { adapters: _adapters, model: _model, ...rest } = body;
  const p = new Fields(body).object("parameters");
  if (!p) return rest;
  const out: JsonObject = { ...rest };
  delete out.parameters;
  const set = (field: string, value: unknown, from: string) => {
    if (value === undefined) return;
    if (body[field] !== undefined && body[field] !== null) throw badRequest(`parameters.${from} and ${field} both given: give one`, `parameters.${from}`);
    out[field] = value;
  };
  for (const key of Object.keys(p.obj)) {
    if (RENAMED[key]) set(RENAMED[key], p.raw(key), key);
    else if (!READ_WITH_TEMPERATURE.has(key)) throw badRequest(`parameters.${key} is not supported with messages (use the chat-completions fields)`, `parameters.${key}`);
  }
  // LMI: greedy unless do_sample; do_sample without a temperature samples at 1
  if (p.has("do_sample") || p.has("temperature")) set("temperature", p.bool("do_sample") ? p.num("temperature") ?? 1 : 0, "do_sample");
  return out;
}
