// vLLM's small routes: GET /v1/models/{id} (the OpenAI SDK's models.retrieve), POST /tokenize and
// POST /detokenize. `model` may name an adapter: it tokenizes as its base does.
import { HttpError, badRequest } from "./errors.ts";
import { Fields } from "./fields.ts";
import { modelObjects, resolveModel } from "./openai.ts";
import { readMessages } from "./chat.ts";
import { encodePrompt } from "./prompt-text.ts";
import type { RouteContext } from "./route.ts";

export function retrieveModel(ctx: RouteContext): Response {
  const id = ctx.params.id;
  const found = modelObjects(ctx.registry).find((m) => m.id === id || m.qualified_id === id);
  if (!found) throw new HttpError(404, `The model \`${id}\` does not exist.`, "model");
  return Response.json(found);
}

export async function tokenize(ctx: RouteContext): Promise<Response> {
  const f = new Fields(ctx.body);
  const { service } = await resolveModel(ctx, f);
  const returnStrs = f.bool("return_token_strs") ?? false;
  let tokens: number[];
  if (f.has("messages")) {
    if (f.has("prompt")) throw badRequest("give prompt or messages, not both", "prompt");
    const text = service.model.chat.render(readMessages(f.raw("messages")), { addGenerationPrompt: f.bool("add_generation_prompt") ?? true });
    // the template writes the special tokens itself (vLLM's default for chat: add_special_tokens false)
    tokens = await encodePrompt(service, text, "messages", { addSpecialTokens: f.bool("add_special_tokens") ?? false });
  } else {
    const prompt = f.str("prompt");
    if (prompt === undefined) throw badRequest("prompt (or messages) is required", "prompt");
    tokens = await encodePrompt(service, prompt, "prompt", { addSpecialTokens: f.bool("add_special_tokens") ?? true });
  }
  f.rejectUnread();
  const tokenizer = service.model.tokenizer;
  return Response.json({
    count: tokens.length, max_model_len: service.maxModelLen, tokens,
    token_strs: returnStrs ? tokens.map((t) => tokenizer.idToToken(t) ?? "") : null,
  });
}

export async function detokenize(ctx: RouteContext): Promise<Response> {
  const f = new Fields(ctx.body);
  const { service } = await resolveModel(ctx, f);
  const tokens = f.raw("tokens");
  f.rejectUnread();
  const vocab = service.model.config.vocabSize;
  if (!Array.isArray(tokens) || !tokens.every((t) => Number.isInteger(t) && t >= 0 && t < vocab)) {
    throw badRequest(`tokens must be a list of token ids in [0, ${vocab})`, "tokens");
  }
  return Response.json({ prompt: service.model.tokenizer.decode(tokens as number[]) });
}
