// The HTTP server: routing, JSON bodies under a size limit, errors in each route's shape, and a
// shutdown mode that refuses new work while health checks and metrics keep answering.
import type { Server } from "bun";
import type { Metrics } from "../engine/metrics.ts";
import { NO_RUNTIME_UPDATES, type AdapterPolicy } from "./adapter-policy.ts";
import type { AdapterResolver } from "./adapter-resolver.ts";
import type { ToolParserName } from "./tool-parsers.ts";
import { log as logger, logFields } from "../log.ts";
import { VERSION } from "../version.ts";
import { ApiKeys } from "./api-keys.ts";
import { chatCompletions } from "./chat.ts";
import { completions } from "./completions.ts";
import { HttpError, badRequest, classify, errorResponse, type ErrorFormat } from "./errors.ts";
import { isObject, type JsonObject } from "./fields.ts";
import { invocations, ping } from "./lmi.ts";
import type { ModelRegistry } from "./model-registry.ts";
import { listModels, loadAdapter, unloadAdapter } from "./openai.ts";
import { detokenize, retrieveModel, tokenize } from "./vllm-routes.ts";
import { ADAPTER_ROUTE_PATTERNS } from "./lmi-adapters.ts";
import type { Route, RouteContext } from "./route.ts";

export interface ServerOptions {
  registry: ModelRegistry;
  metrics: Metrics;
  host: string;
  port: number;
  maxBodyBytes: number;
  /** Runtime adapter loading (default: off). */
  adapterPolicy?: AdapterPolicy;
  /** Load on first request (default: off). */
  resolver?: AdapterResolver;
  log?: (msg: string) => void;
  /** A log line for each refused request (default off). */
  logRequests?: boolean;
  /** Bearer keys required on every route but /ping, /health and /metrics (none: open). */
  apiKeys?: readonly string[];
  /** tool_choice "auto": the model family's tool-call format (absent: auto is refused). */
  toolCallParser?: ToolParserName;
}

export interface RunningServer {
  url: string;
  port: number;
  /** Closes the listener; responses still being written get STOP_GRACE_MS, then every connection is closed. */
  stop(): Promise<void>;
  /** From now on only /ping, /health and /metrics answer; everything else gets 503 + Retry-After. */
  stopAccepting(): void;
}

const SHUTDOWN_RETRY_AFTER_S = 5;
const STOP_GRACE_MS = 5000;
// Keep-alive connections idle this long are closed; generation routes lift the limit per request.
const IDLE_TIMEOUT_S = 120;

async function readJson(req: Request, maxBytes: number): Promise<JsonObject> {
  const tooLarge = (n: string) => new HttpError(413, `the request body (${n} bytes) is over the limit of ${maxBytes} bytes`);
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) throw tooLarge(declared);
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge(`more than ${maxBytes}`);
      }
      chunks.push(value);
    }
  }
  const text = new TextDecoder().decode(Buffer.concat(chunks));
  if (text.trim() === "") throw badRequest("the request body must be a JSON object");
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(body)) throw badRequest("the request body must be a JSON object");
  return body;
}

/** A client's X-Request-Id when it is a sane token (at most 128 of [A-Za-z0-9._:-]), else a fresh one. */
function requestIdOf(req: Request): string {
  const given = req.headers.get("x-request-id");
  return given && /^[\w.:-]{1,128}$/.test(given) ? given : crypto.randomUUID();
}

export function startServer(opts: ServerOptions): RunningServer {
  const log = opts.log ?? ((msg: string) => logger.info(msg));
  let accepting = true;
  const apiKeys = new ApiKeys(opts.apiKeys ?? []);
  const health = () => (accepting ? new Response("", { status: 200 }) : new Response("", { status: 503, headers: { "Retry-After": String(SHUTDOWN_RETRY_AFTER_S) } }));
  const routes: Record<string, Route[]> = {
    "/v1/completions": [{ method: "POST", format: "openai", long: true, handler: completions }],
    "/v1/chat/completions": [{ method: "POST", format: "openai", long: true, handler: (ctx) => chatCompletions(ctx) }],
    "/v1/models": [{ method: "GET", format: "openai", handler: listModels }],
    "/v1/load_lora_adapter": [{ method: "POST", format: "openai", long: true, handler: loadAdapter }],
    "/v1/unload_lora_adapter": [{ method: "POST", format: "openai", long: true, handler: unloadAdapter }],
    "/invocations": [{ method: "POST", format: "lmi", long: true, handler: invocations }],
    "/tokenize": [{ method: "POST", format: "openai", handler: tokenize }],
    "/detokenize": [{ method: "POST", format: "openai", handler: detokenize }],
    "/ping": [{ method: "GET", format: "lmi", always: true, handler: () => ping(accepting) }],
    "/health": [{ method: "GET", format: "openai", always: true, handler: health }],
    "/version": [{ method: "GET", format: "openai", always: true, handler: () => Response.json({ version: VERSION }) }],
    "/metrics": [{ method: "GET", format: "openai", always: true, handler: async () => new Response(await opts.metrics.render(), { headers: { "Content-Type": opts.metrics.contentType } }) }],
  };
  const promptField: Record<string, string> = { "/v1/chat/completions": "messages", "/invocations": "inputs" };
  // routes with path parameters, tried in order when no exact path matches
  // `:name` is one path segment, `:name*` the rest of the path (a Hub model id holds a slash)
  const patterns = [...ADAPTER_ROUTE_PATTERNS, { pattern: "/v1/models/:id*", routes: [{ method: "GET", format: "openai", handler: retrieveModel } as Route] }]
    .map(({ pattern, routes }) => ({ pattern: new RegExp(`^${pattern.replace(/:(\w+)(\*?)/g, (_, name, rest) => `(?<${name}>${rest ? ".+" : "[^/]+"})`)}$`), routes }));

  function findRoutes(path: string): { entries: Route[]; params: Record<string, string> } | undefined {
    if (routes[path]) return { entries: routes[path], params: {} };
    for (const { pattern, routes: entries } of patterns) {
      const m = pattern.exec(path);
      if (m) return { entries, params: Object.fromEntries(Object.entries(m.groups ?? {}).map(([k, v]) => [k, decodeURIComponent(v)])) };
    }
    return undefined;
  }

  async function handle(req: Request, server: Server<undefined>): Promise<Response> {
    const requestId = requestIdOf(req);
    const res = await route(req, server, requestId);
    res.headers.set("X-Request-Id", requestId);
    return res;
  }

  async function route(req: Request, server: Server<undefined>, requestId: string): Promise<Response> {
    const path = new URL(req.url).pathname.replace(/(.)\/+$/, "$1");
    const format: ErrorFormat = path.startsWith("/v1/") ? "openai" : "lmi";
    const found = findRoutes(path);
    const entries = found?.entries;
    if (!entries) return errorResponse(classify(new HttpError(404, `no route ${req.method} ${path}`)), format);
    const method = req.method === "HEAD" ? "GET" : req.method;
    const route = entries.find((r) => r.method === method);
    if (!route) {
      const allow = entries.map((r) => r.method).join(", ");
      return errorResponse(classify(new HttpError(405, `${req.method} is not allowed on ${path} (allowed: ${allow})`, null, { Allow: allow })), entries[0].format);
    }
    // health checks, metrics and the version (the `always` routes) stay open to load balancers and scrapers
    if (!route.always && !apiKeys.allows(req.headers.get("authorization"))) {
      return errorResponse(classify(new HttpError(401, "a valid API key is required: Authorization: Bearer <key>", null, { "WWW-Authenticate": "Bearer" })), route.format);
    }
    if (!accepting && !route.always) {
      return errorResponse(classify(new HttpError(503, "the server is shutting down", null, { "Retry-After": String(SHUTDOWN_RETRY_AFTER_S) })), route.format);
    }
    try {
      if (route.long) server.timeout(req, 0);
      const emptyBody = route.optionalBody && (req.headers.get("content-length") ?? "0") === "0" && !req.headers.get("transfer-encoding");
      const body = route.method === "POST" && !emptyBody ? await readJson(req, opts.maxBodyBytes) : {};
      const ctx: RouteContext = {
        request: req, requestId, body, params: found!.params, registry: opts.registry, metrics: opts.metrics, adapterPolicy: opts.adapterPolicy ?? NO_RUNTIME_UPDATES, resolver: opts.resolver, toolCallParser: opts.toolCallParser, log,
      };
      return await route.handler(ctx);
    } catch (e) {
      const c = classify(e, promptField[path]);
      if (c.unexpected) log(`${req.method} ${path} failed: ${(e as Error)?.stack ?? e}`);
      if (opts.logRequests) logFields("refused", { id: requestId, method: req.method, path, status: c.status, error: c.message });
      return errorResponse(c, route.format);
    }
  }

  const server = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    idleTimeout: IDLE_TIMEOUT_S,
    // our own limit answers in the route's error shape; Bun's only guards against absurd sizes
    maxRequestBodySize: Math.max(opts.maxBodyBytes * 4, 1 << 30),
    fetch: handle,
    error(e) {
      log(`unhandled server error: ${e.stack ?? e}`);
      return Response.json({ error: { message: "internal error", type: "InternalServerError", param: null, code: 500 } }, { status: 500 });
    },
  });
  const port = server.port!;
  const host = opts.host === "0.0.0.0" || opts.host === "" ? "127.0.0.1" : opts.host === "::" ? "[::1]" : opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}`,
    port,
    stop: async () => {
      // responses in flight finish writing first (a drained stream still owes its last chunks);
      // idle keep-alive connections would hold a graceful stop open, so it ends by force
      const end = Date.now() + STOP_GRACE_MS;
      while (server.pendingRequests > 0 && Date.now() < end) await Bun.sleep(10);
      await server.stop(true);
    },
    stopAccepting: () => {
      accepting = false;
    },
  };
}
