// SageMaker LMI's adapter management API (djl-serving's adapters_api.md): register, update,
// describe, unregister and list adapters of one base model, as `/models/{model}/adapters...` or,
// where one model is served, `/adapters...`. Arguments in the query string or a JSON body.
import type { EngineService } from "../engine/engine-service.ts";
import { adapterSourceDir, requireRuntimeUpdates } from "./adapter-policy.ts";
import { HttpError, badRequest } from "./errors.ts";
import type { Route, RouteContext } from "./route.ts";

const DEFAULT_PAGE = 100;

/** An argument from the JSON body, else the query string. */
function arg(ctx: RouteContext, name: string): string | undefined {
  const v = ctx.body[name];
  if (v !== undefined && v !== null) {
    if (typeof v !== "string" && typeof v !== "boolean" && typeof v !== "number") throw badRequest(`${name} must be a string`, name);
    return String(v);
  }
  return new URL(ctx.request.url).searchParams.get(name) ?? undefined;
}

function flag(ctx: RouteContext, name: string): boolean | undefined {
  const v = arg(ctx, name);
  if (v === undefined) return undefined;
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw badRequest(`${name} must be true or false, got ${JSON.stringify(v)}`, name);
}

/** The route's model, or the only one served (the short form). */
function serviceOf(ctx: RouteContext): EngineService {
  const name = ctx.params.model;
  const all = ctx.registry.all();
  if (name !== undefined) {
    const s = ctx.registry.base(name);
    if (!s) throw new HttpError(404, `model "${name}" is not served (served: ${all.map((x) => x.name).join(", ")})`);
    return s;
  }
  if (all.length !== 1) throw badRequest(`several models are served (${all.map((x) => x.name).join(", ")}): use /models/{model}/adapters`);
  return all[0];
}

function adapterOf(ctx: RouteContext, service: EngineService): string {
  const name = ctx.params.name;
  if (!service.hasAdapter(name)) throw new HttpError(404, `adapter "${name}" is not registered on model "${service.name}"`);
  return name;
}

const status = (text: string, code = 200) => Response.json({ status: text }, { status: code });
const describe = (service: EngineService, name: string) => ({ name, src: service.adapterDir(name), pin: service.model.adapters.isPinned(name) });

async function register(ctx: RouteContext): Promise<Response> {
  requireRuntimeUpdates(ctx.adapterPolicy);
  const service = serviceOf(ctx);
  const name = arg(ctx, "name"), src = arg(ctx, "src");
  if (!name) throw badRequest("name is required", "name");
  if (!src) throw badRequest("src is required", "src");
  if (service.hasAdapter(name)) throw new HttpError(409, `adapter "${name}" is already registered on model "${service.name}" (update or delete it)`);
  const pin = flag(ctx, "pin") ?? false, preload = flag(ctx, "preload") ?? true;
  await service.loadAdapter(name, await adapterSourceDir(ctx.adapterPolicy, src, "src"), { pin, preload: preload || pin });
  ctx.log(`registered adapter ${name} on ${service.name}`);
  return status(`Adapter ${name} registered`);
}

async function update(ctx: RouteContext): Promise<Response> {
  requireRuntimeUpdates(ctx.adapterPolicy);
  const service = serviceOf(ctx);
  const name = adapterOf(ctx, service);
  const pin = flag(ctx, "pin"), preload = flag(ctx, "preload");
  if (pin !== undefined) await service.pin(name, pin);
  if (preload) await service.model.adapters.load(name);
  return status(`Adapter ${name} updated`);
}

async function unregister(ctx: RouteContext): Promise<Response> {
  requireRuntimeUpdates(ctx.adapterPolicy);
  const service = serviceOf(ctx);
  const name = adapterOf(ctx, service);
  const timeout = arg(ctx, "timeout");
  if (timeout !== undefined && !(Number(timeout) > 0)) throw badRequest("timeout must be a positive number of seconds", "timeout");
  await service.unloadAdapter(name, { wait: flag(ctx, "wait") ?? true, timeoutMs: timeout === undefined ? undefined : Number(timeout) * 1000 });
  ctx.log(`unregistered adapter ${name} from ${service.name}`);
  return status(`Adapter ${name} unregistered`);
}

function describeOne(ctx: RouteContext): Response {
  const service = serviceOf(ctx);
  return Response.json([describe(service, adapterOf(ctx, service))]);
}

function list(ctx: RouteContext): Response {
  const service = serviceOf(ctx);
  const q = new URL(ctx.request.url).searchParams;
  const limit = Number(q.get("limit") ?? DEFAULT_PAGE), start = Number(q.get("next_page_token") ?? 0);
  if (!Number.isInteger(limit) || limit < 1) throw badRequest("limit must be a positive integer", "limit");
  if (!Number.isInteger(start) || start < 0) throw badRequest("next_page_token must come from a previous answer", "next_page_token");
  const names = service.adapterNames();
  const page = names.slice(start, start + limit).map((n) => describe(service, n));
  return Response.json({ adapters: page, ...(start + limit < names.length ? { nextPageToken: String(start + limit) } : {}) });
}

const collection: Route[] = [
  { method: "GET", format: "lmi", handler: list },
  { method: "POST", format: "lmi", long: true, optionalBody: true, handler: register },
];
const item: Route[] = [
  { method: "GET", format: "lmi", handler: describeOne },
  { method: "DELETE", format: "lmi", long: true, handler: unregister },
];
const updateRoute: Route[] = [{ method: "POST", format: "lmi", long: true, optionalBody: true, handler: update }];

export const ADAPTER_ROUTE_PATTERNS: { pattern: string; routes: Route[] }[] = [
  { pattern: "/models/:model/adapters", routes: collection },
  { pattern: "/models/:model/adapters/:name", routes: item },
  { pattern: "/models/:model/adapters/:name/update", routes: updateRoute },
  { pattern: "/adapters", routes: collection },
  { pattern: "/adapters/:name", routes: item },
  { pattern: "/adapters/:name/update", routes: updateRoute },
];
