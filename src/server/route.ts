// What a route handler gets and what the router needs to know about it.
import type { Metrics } from "../engine/metrics.ts";
import type { AdapterPolicy } from "./adapter-policy.ts";
import type { ErrorFormat } from "./errors.ts";
import type { JsonObject } from "./fields.ts";
import type { ModelRegistry } from "./model-registry.ts";

export interface RouteContext {
  request: Request;
  /** The parsed JSON object (POST routes), else {}. */
  body: JsonObject;
  registry: ModelRegistry;
  metrics: Metrics;
  adapterPolicy: AdapterPolicy;
  log: (msg: string) => void;
}

export interface Route {
  method: "GET" | "POST";
  /** Shape of this route's error bodies. */
  format: ErrorFormat;
  /** Generation: no idle timeout while the model works. */
  long?: boolean;
  /** Still answered after stopAccepting() (health and metrics). */
  always?: boolean;
  handler: (ctx: RouteContext) => Promise<Response> | Response;
}
