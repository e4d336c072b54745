// Errors as HTTP answers: what status each failure is, and the two body shapes clients expect
// (OpenAI's for /v1/*, DJL serving's for the SageMaker LMI routes).
import { AdapterError } from "../adapters/peft-config.ts";
import { UnknownAdapterError } from "../adapters/adapter-store.ts";
import { AdapterBusyError, CancelledError, OverloadedError, PinLimitError } from "../engine/service-errors.ts";
import { RequestError } from "../engine/request-check.ts";
import { SamplingError } from "../engine/sampling.ts";
import { ChatTemplateError } from "../tokenizer/chat.ts";

/** A failure the handler has already sized: status, message, and the request field at fault. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string, param: string | null = null): HttpError => new HttpError(400, message, param);

export type ErrorFormat = "openai" | "lmi";

export interface Classified {
  status: number;
  message: string;
  param: string | null;
  headers: Record<string, string>;
  /** Not the client's doing: log it. */
  unexpected: boolean;
}

/** Absolute paths cut to their last component: a client never learns where the server keeps its files. */
export function withoutDirectories(message: string): string {
  return message.replace(/(?<![\w.:/])\/(?:[^\s"':,/]+\/)+([^\s"':,/]+)/g, "$1");
}

/** `promptField` is the request field a RequestError about the prompt points at ("prompt", "messages", "inputs"). */
export function classify(e: unknown, promptField = "prompt"): Classified {
  const c = (status: number, message: string, param: string | null = null, headers: Record<string, string> = {}): Classified => ({
    status, message, param, headers, unexpected: false,
  });
  if (e instanceof HttpError) return c(e.status, e.message, e.param, e.headers);
  if (e instanceof OverloadedError) return c(503, e.message, null, { "Retry-After": String(Math.max(1, Math.ceil(e.retryAfterSeconds))) });
  // cancelled by the server (shutdown drain); a client that went away reads nothing anyway
  if (e instanceof CancelledError) return c(503, e.message, null, { "Retry-After": "5" });
  if (e instanceof SamplingError) return c(400, e.message, e.message.split(" ")[0]);
  if (e instanceof RequestError) return c(400, e.message, /^logit_bias/.test(e.message) ? "logit_bias" : /max_tokens/.test(e.message) ? "max_tokens" : promptField);
  if (e instanceof ChatTemplateError) return c(400, e.message, "messages");
  if (e instanceof UnknownAdapterError) return c(404, e.message, "model");
  if (e instanceof AdapterError) return c(400, withoutDirectories(e.message), "model");
  if (e instanceof AdapterBusyError) return c(409, e.message, "lora_name");
  if (e instanceof PinLimitError) return c(409, e.message, "pinned");
  const message = e instanceof Error ? e.message : String(e);
  return { status: 500, message: `internal error: ${message}`, param: null, headers: {}, unexpected: true };
}

const OPENAI_TYPES: Record<number, string> = {
  400: "invalid_request_error", 401: "AuthenticationError", 403: "PermissionDeniedError", 404: "NotFoundError", 405: "invalid_request_error", 409: "conflict_error",
  413: "invalid_request_error", 500: "InternalServerError", 503: "ServiceUnavailableError",
};

/** The error object alone (also sent inside a stream once headers are out). */
export function errorBody(c: Classified, format: ErrorFormat): unknown {
  if (format === "lmi") return { error: c.message, code: c.status };
  return { error: { message: c.message, type: OPENAI_TYPES[c.status] ?? "invalid_request_error", param: c.param, code: c.status } };
}

export function errorResponse(c: Classified, format: ErrorFormat): Response {
  return Response.json(errorBody(c, format), { status: c.status, headers: c.headers });
}
