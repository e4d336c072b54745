// SageMaker LMI (DJL serving) routes: POST /invocations and GET /ping.
// Parameters follow DJL's vLLM backend: max_new_tokens defaults to 30; without do_sample: true the
// request is greedy whatever temperature says; do_sample: true without temperature samples at 1.0;
// top_p / top_k default to off (generation_config.json is not consulted, as in LMI).
import type { EngineService, StreamEvent } from "../engine/engine-service.ts";
import { randomSeed, type SamplingParams } from "../engine/sampling.ts";
import { chatCompletions } from "./chat.ts";
import { chatBodyWithParameters } from "./lmi-chat-params.ts";
import { HttpError, badRequest } from "./errors.ts";
import { constrained, readStructuredOutput } from "./structured-output.ts";
import { Fields } from "./fields.ts";
import { collectAll, startAll, tokenString, type Collected, type Started } from "./generation.ts";
import type { Resolved } from "./openai.ts";
import type { RouteContext } from "./route.ts";
import { checkPromptBytes, encodePrompt } from "./prompt-text.ts";
import { streamResponse } from "./stream.ts";

const DEFAULT_MAX_NEW_TOKENS = 30;
export const ADAPTER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier";
const CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes";

/**
 * The adapter a request names outside its body, as SageMaker passes it: the adapter-identifier
 * header, `adapter=NAME` among the custom attributes, or `?adapter=` ("" for none).
 */
function requestAdapter(req: Request): string {
  const identifier = req.headers.get(ADAPTER_HEADER);
  if (identifier) return identifier;
  const attributes = req.headers.get(CUSTOM_ATTRIBUTES_HEADER) ?? "";
  for (const part of attributes.split(/[;,]/)) {
    const [key, value] = part.split("=", 2).map((x) => x.trim());
    if (key === "adapter" && value) return value;
  }
  return new URL(req.url).searchParams.get("adapter") ?? "";
}

/** "" or absent: the base of `model` (or the first model); otherwise this adapter, within `model`'s base if it names one. */
async function resolve(ctx: RouteContext, adapter: string, model: string | undefined): Promise<Resolved> {
  const registry = ctx.registry;
  if (adapter !== "") {
    const within = model !== undefined ? registry.base(model) : undefined;
    const r = registry.resolve(adapter, within, "adapters") ?? (await ctx.resolver?.resolve(registry, within ? `${within.name}:${adapter}` : adapter));
    if (!r) throw new HttpError(404, `adapter "${adapter}" is not known${within ? ` for model "${model}"` : ""}`, "adapters");
    return { ...r, name: adapter };
  }
  if (model !== undefined) {
    const r = registry.resolve(model);
    if (!r) throw new HttpError(404, `model "${model}" is not served`, "model");
    return { ...r, name: model };
  }
  const service = registry.all()[0];
  if (!service) throw new HttpError(404, "no model is being served", "model");
  return { service, adapter: null, name: service.name };
}

function readParams(service: EngineService, p: Fields | undefined): { params: SamplingParams; stop: string[] | undefined; details: boolean; fullText: boolean } {
  const get = p ?? new Fields({});
  const doSample = get.bool("do_sample") ?? false;
  const temperature = get.num("temperature");
  const topK = get.int("top_k");
  const seed = get.int("seed");
  const ignoreEos = get.bool("ignore_eos_token") ?? false;
  // prefill tokens with their log-probabilities (the engine scores the prompt in its prefill step)
  const prefill = get.bool("decoder_input_details") ?? false;
  const g = service.model.generation;
  return {
    params: {
      temperature: doSample ? temperature ?? 1 : 0,
      topP: get.num("top_p") ?? 1,
      topK: topK === undefined || topK === -1 ? 0 : topK,
      seed: seed === undefined ? randomSeed() : BigInt(seed),
      maxTokens: get.int("max_new_tokens") ?? DEFAULT_MAX_NEW_TOKENS,
      topLogprobs: 0,
      ignoreEos,
      stopTokenIds: [...new Set([...(g.eosTokenIds ?? []), ...service.model.config.eosTokenIds])],
      ...(prefill ? { promptLogprobs: 0 } : {}),
      repetitionPenalty: get.num("repetition_penalty"),
      presencePenalty: get.num("presence_penalty"),
      frequencyPenalty: get.num("frequency_penalty"),
      minP: get.num("min_p"),
    },
    stop: get.strings("stop_sequences"),
    details: get.bool("details") ?? false,
    fullText: get.bool("return_full_text") ?? false,
  };
}

function finishReason(e: StreamEvent | undefined, params: SamplingParams): string {
  if (!e || e.finishReason === "length") return "length";
  return !params.ignoreEos && params.stopTokenIds.includes(e.token.id) ? "eos_token" : "stop_sequence";
}

function details(service: EngineService, input: string, events: StreamEvent[], params: SamplingParams, prompt: Started) {
  const tokenizer = service.model.tokenizer;
  return {
    finish_reason: finishReason(events[events.length - 1], params),
    generated_tokens: events.length,
    inputs: input,
    tokens: events.map((e) => ({ id: e.token.id, text: e.text, log_prob: e.token.logprob, special: tokenizer.isSpecial(e.token.id) })),
    // decoder_input_details: the prompt's tokens, each with its log-probability given those before it
    ...(params.promptLogprobs !== undefined ? {
      prefill: prompt.promptIds.map((id, k) => ({
        id, text: tokenString(tokenizer, id), log_prob: prompt.promptLogprobs?.[k]?.logprob ?? null, special: tokenizer.isSpecial(id),
      })),
    } : {}),
  };
}

export async function invocations(ctx: RouteContext): Promise<Response> {
  const f = new Fields(ctx.body);
  const header = requestAdapter(ctx.request);
  const model = f.str("model");
  if (f.has("messages")) {
    const adapter = f.str("adapters") ?? header;
    const resolved = await resolve(ctx, adapter, model);
    return chatCompletions({ ...ctx, body: chatBodyWithParameters(ctx.body) }, { resolved, format: "lmi", sse: false });
  }
  const raw = f.raw("inputs");
  const single = typeof raw === "string";
  if (!single && !(Array.isArray(raw) && raw.length > 0 && raw.every((s) => typeof s === "string"))) {
    throw badRequest("inputs must be a string or a non-empty list of strings (or give messages)", "inputs");
  }
  const inputs: string[] = single ? [raw] : (raw as string[]);
  const adaptersRaw = f.raw("adapters");
  let adapters: string[];
  if (adaptersRaw === undefined) adapters = inputs.map(() => header);
  else if (typeof adaptersRaw === "string") adapters = inputs.map(() => adaptersRaw);
  else if (Array.isArray(adaptersRaw) && adaptersRaw.every((a) => typeof a === "string")) {
    if (adaptersRaw.length !== inputs.length) throw badRequest(`adapters lists ${adaptersRaw.length} names for ${inputs.length} inputs`, "adapters");
    adapters = adaptersRaw as string[];
  } else throw badRequest("adapters must be a string or a list of strings", "adapters");
  const pf = f.object("parameters");
  const stream = f.bool("stream") ?? pf?.bool("stream") ?? false;
  f.rejectUnread();
  if (stream && !single) throw badRequest("stream needs a single input string", "stream");

  // one service per input; requests for one service are submitted together so they batch
  const resolved = await Promise.all(adapters.map((a) => resolve(ctx, a, model)));
  const so = pf ? readStructuredOutput(pf) : undefined; // vLLM's guided_* names in LMI's parameters
  const read = resolved.map((r, i) => {
    const p = readParams(r.service, pf);
    checkPromptBytes(r.service, Buffer.byteLength(inputs[i]), "inputs");
    return { r, p };
  });
  pf?.rejectUnread();
  const reqs = await Promise.all(read.map(async ({ r, p }, i) => {
    p.params = await constrained(r.service, p.params, so);
    return {
      r, p, req: { id: single ? ctx.requestId : `${ctx.requestId}-${i}`, promptIds: await encodePrompt(r.service, inputs[i], "inputs"), adapter: r.adapter, params: p.params, stop: p.stop, signal: ctx.request.signal },
    };
  }));
  const groups = new Map<EngineService, number[]>();
  reqs.forEach((x, i) => groups.set(x.r.service, [...(groups.get(x.r.service) ?? []), i]));
  const settled = await Promise.allSettled([...groups].map(([service, idx]) => startAll(service, idx.map((i) => reqs[i].req))));
  const failed = settled.find((x) => x.status === "rejected");
  if (failed) {
    settled.forEach((x) => x.status === "fulfilled" && x.value.forEach((s) => s.cancel()));
    throw (failed as PromiseRejectedResult).reason;
  }
  const started: Started[] = new Array(reqs.length);
  [...groups.values()].forEach((idx, g) => idx.forEach((i, k) => (started[i] = (settled[g] as PromiseFulfilledResult<Started[]>).value[k])));
  const output = (i: number, c: Collected) => ({
    generated_text: (reqs[i].p.fullText ? inputs[i] : "") + c.text,
    ...(reqs[i].p.details ? { details: details(reqs[i].r.service, inputs[i], c.events, reqs[i].p.params, started[i]) } : {}),
  });

  if (!stream) {
    const results = await collectAll(started);
    const outputs = results.map((c, i) => output(i, c));
    return Response.json(single ? outputs[0] : outputs);
  }
  return streamResponse({
    format: "lmi", sse: false, log: ctx.log, cancel: () => started[0].cancel(),
    pump: async (send) => {
      const events: StreamEvent[] = [];
      for await (const e of started[0].events) {
        events.push(e);
        const line = { token: { id: e.token.id, text: e.text, log_prob: e.token.logprob, special: reqs[0].r.service.model.tokenizer.isSpecial(e.token.id) } };
        if (e.finishReason === null) send(line);
        else send({ ...line, ...output(0, { events, text: events.map((x) => x.text).join(""), finishReason: e.finishReason, stopReason: e.stopReason ?? null }) });
      }
    },
  });
}

/** 200 {} while serving; 503 once the server stops accepting requests, so a load balancer moves on. */
export function ping(healthy: boolean): Response {
  return healthy ? Response.json({}) : Response.json({ error: "shutting down", code: 503 }, { status: 503, headers: { "Retry-After": "5" } });
}
