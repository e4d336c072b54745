// What a route handler gets and what the router needs to know about it.
import type { Metrics } from "../engine/metrics.ts";
import type { AdapterPolicy } from "./adapter-policy.ts";
import type { AdapterResolver } from "./adapter-resolver.ts";
import type { ErrorFormat } from "./errors.ts";
import type { JsonObject } from "./fields.ts";
import type { ModelRegistry } from "./model-registry.ts";
import type { ToolParserName } from "./tool-parsers.ts";

export interface RouteContext {
  request: Request;
  /** The client's X-Request-Id, else one made up; echoed on the response and named in the log. */
  requestId: string;
  /** The parsed JSON object (POST routes), else {}. */
  body: JsonObject;
  /** Path parameters of a pattern route (`/models/:model/adapters/:name`). */
  params: Record<string, string>;
  registry: ModelRegistry;
  metrics: Metrics;
  adapterPolicy: AdapterPolicy;
  /** Load on first request, where --adapter-source is configured. */
  resolver?: AdapterResolver;
  /** tool_choice "auto": the model family's tool-call format (--tool-call-parser); absent: auto is refused. */
  toolCallParser?: ToolParserName;
  log: (msg: string) => void;
}

export interface Route {
  method: "GET" | "POST" | "DELETE";
  /** Shape of this route's error bodies. */
  format: ErrorFormat;
  /** Generation: no idle timeout while the model works. */
  long?: boolean;
  /** Still answered after stopAccepting() (health and metrics). */
  always?: boolean;
  /** A POST whose arguments may come in the query string alone: an empty body reads as {}. */
  optionalBody?: boolean;
  handler: (ctx: RouteContext) => Promise<Response> | Response;
}
