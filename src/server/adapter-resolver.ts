// Load on first request (vLLM's LoRA resolver): with --adapter-source configured, a request naming
// an adapter no base holds fetches `<source>/<name>` (a local folder or an s3:// prefix), checks it
// and serves it; concurrent first requests for one adapter share one fetch.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fetchRemoteAdapter, isRemoteSource, type RemoteSources } from "../sources/remote-source.ts";
import type { EngineService } from "../engine/engine-service.ts";
import type { ModelRegistry, Resolution } from "./model-registry.ts";

export class AdapterResolver {
  private readonly pending = new Map<string, Promise<boolean>>();

  /** `source`: a local folder, s3://bucket/prefix, or hf://ORG (the Hub repos ORG/<name>). */
  constructor(readonly source: string, private readonly remote: RemoteSources | undefined) {
    if ((isRemoteSource(source) || source.startsWith("hf://")) && !remote) throw new Error(`the adapter source ${source} needs the download cache`);
  }

  /** What `model` names once fetched, or undefined where the source has no such adapter. */
  async resolve(registry: ModelRegistry, model: string): Promise<Resolution | undefined> {
    const colon = model.lastIndexOf(":");
    const service = colon > 0 ? registry.base(model.slice(0, colon)) : registry.all().length === 1 ? registry.all()[0] : undefined;
    const name = colon > 0 ? model.slice(colon + 1) : model;
    // a name is one folder of the source: no separators, no "." or ".."
    if (!service || !/^[\w.-]+$/.test(name) || /^\.+$/.test(name)) return undefined;
    const key = `${service.name}:${name}`;
    let fetching = this.pending.get(key);
    if (!fetching) {
      fetching = this.fetch(service, name).finally(() => this.pending.delete(key));
      this.pending.set(key, fetching);
    }
    return (await fetching) ? { service, adapter: name } : undefined;
  }

  private async fetch(service: EngineService, name: string): Promise<boolean> {
    if (service.hasAdapter(name)) return true;
    let dir: string;
    const hubOrg = /^hf:\/\/([\w.-]+)\/?$/.exec(this.source)?.[1];
    if (hubOrg || isRemoteSource(this.source)) {
      const src = hubOrg ? `${hubOrg}/${name}` : `${this.source.replace(/\/+$/, "")}/${name}`;
      try {
        dir = await fetchRemoteAdapter(src, this.remote!);
      } catch (e) {
        // the source has no such adapter (an empty prefix, a repo the Hub does not know): not found
        if (/^nothing under |Repository not found|\b404\b/i.test((e as Error).message)) return false;
        throw e;
      }
    } else {
      dir = join(this.source, name);
      if (!existsSync(join(dir, "adapter_config.json"))) return false;
    }
    await service.loadAdapter(name, dir);
    return true;
  }
}
