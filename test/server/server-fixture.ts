// A real server over the tiny-llama2 fixture on the CPU twin, on a random port.
import { EngineService, type ServiceOptions } from "../../src/engine/engine-service.ts";
import { loadModel, type LoadOptions } from "../../src/engine/load-model.ts";
import { Metrics } from "../../src/engine/metrics.ts";
import type { AdapterPolicy } from "../../src/server/adapter-policy.ts";
import type { AdapterResolver } from "../../src/server/adapter-resolver.ts";
import type { ToolParserName } from "../../src/server/tool-parsers.ts";
import { startServer, type RunningServer } from "../../src/server/http.ts";
import { ModelRegistry } from "../../src/server/model-registry.ts";
import { afterAll, beforeAll } from "bun:test";
import { adaptersDir, cpuDevice, modelDir, readReference, type ReferenceCase } from "../helpers/fixtures.ts";

export const MODEL = "tiny-llama2";

export interface FixtureServer {
  service: EngineService;
  server: RunningServer;
  metrics: Metrics;
  url: string;
  logs: string[];
  post(path: string, body: unknown, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export async function startFixtureServer(opts: { maxQueue?: number; maxBodyBytes?: number; load?: Partial<LoadOptions>; adapterPolicy?: AdapterPolicy; resolver?: AdapterResolver; service?: Partial<ServiceOptions>; apiKeys?: string[]; toolCallParser?: ToolParserName } = {}): Promise<FixtureServer> {
  const model = loadModel({ modelDir: modelDir(MODEL), adaptersDir: adaptersDir(MODEL), device: await cpuDevice(), maxSeqs: 64, ...opts.load });
  const metrics = new Metrics();
  const service = new EngineService(model, { name: MODEL, maxQueue: opts.maxQueue ?? 256, metrics, ...opts.service });
  service.start();
  const registry = new ModelRegistry();
  registry.add(service);
  const logs: string[] = [];
  const server = startServer({
    registry, metrics, host: "127.0.0.1", port: 0, maxBodyBytes: opts.maxBodyBytes ?? 1 << 20, log: (m) => logs.push(m),
    adapterPolicy: opts.adapterPolicy ?? { runtimeUpdates: true, allowedRoots: ["/"] }, resolver: opts.resolver, apiKeys: opts.apiKeys, toolCallParser: opts.toolCallParser,
  });
  const url = server.url;
  return {
    service, server, metrics, url, logs,
    post: (path, body, init = {}) => fetch(`${url}${path}`, {
      method: "POST", headers: { "Content-Type": "application/json", ...init.headers }, body: typeof body === "string" ? body : JSON.stringify(body), ...init,
    }),
    close: async () => {
      await server.stop();
      service.stop();
    },
  };
}

/** The JSON payloads of an SSE body, without the final [DONE] (which must be there). */
export function sseEvents(body: string): any[] {
  const frames = body.split("\n\n").filter((f) => f.length > 0);
  if (frames[frames.length - 1] !== "data: [DONE]") throw new Error(`stream does not end with [DONE]: ${body.slice(-200)}`);
  return frames.slice(0, -1).map((f) => {
    if (!f.startsWith("data: ")) throw new Error(`not an SSE data frame: ${f}`);
    return JSON.parse(f.slice(6));
  });
}

export function jsonLines(body: string): any[] {
  return body.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

/** Waits until the service has nothing in flight (or fails after `ms`). */
export async function settled(service: EngineService, ms = 5000): Promise<number> {
  const end = Date.now() + ms;
  while (service.inFlight > 0 && Date.now() < end) await Bun.sleep(10);
  return service.inFlight;
}

/** A fixture server and the model's reference cases, started before the tests of the enclosing scope and closed after. */
export function withFixtureServer(opts: Parameters<typeof startFixtureServer>[0] = {}): { s: FixtureServer; cases: ReferenceCase[] } {
  const fx = {} as { s: FixtureServer; cases: ReferenceCase[] };
  beforeAll(async () => {
    fx.s = await startFixtureServer(opts);
    fx.cases = (await readReference(MODEL)).cases;
  });
  afterAll(() => fx.s.close());
  return fx;
}
