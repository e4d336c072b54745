// The models one server answers for: each base model's service, and the adapters reachable
// through it. An adapter is identified by (base, name): a request's `model` names a base, an
// adapter as `BASE:ADAPTER`, or a bare adapter name that exactly one base holds (never guessed).
import type { EngineService } from "../engine/engine-service.ts";
import { HttpError } from "./errors.ts";

export interface ModelCard {
  /** The name to send as `model`: the bare adapter name, or BASE:ADAPTER where bases share the name. */
  id: string;
  /** BASE:ADAPTER for an adapter, the base's own name for a base. */
  qualifiedId: string;
  /** The base model an adapter belongs to; null for a base model. */
  parent: string | null;
  root: string;
}

export interface Resolution {
  service: EngineService;
  /** The adapter's name within its base; null for the base model itself. */
  adapter: string | null;
}

export const qualifiedName = (base: string, adapter: string): string => `${base}:${adapter}`;

export class ModelRegistry {
  private readonly services = new Map<string, EngineService>();

  add(service: EngineService): void {
    if (this.services.has(service.name)) throw new Error(`model name "${service.name}" is used twice`);
    this.services.set(service.name, service);
  }

  all(): EngineService[] {
    return [...this.services.values()];
  }

  base(name: string): EngineService | undefined {
    return this.services.get(name);
  }

  /**
   * What `model` names, or undefined where nothing does. `within` limits a bare adapter name to one
   * base (LMI's route model). A bare name that several bases hold is refused (400) with the choices.
   */
  resolve(model: string, within?: EngineService, param = "model"): Resolution | undefined {
    const base = this.services.get(model);
    if (base && (!within || base === within)) return { service: base, adapter: null };
    const colon = model.lastIndexOf(":");
    if (colon > 0) {
      const service = this.services.get(model.slice(0, colon)), adapter = model.slice(colon + 1);
      if (!service || (within && service !== within) || !service.hasAdapter(adapter)) return undefined;
      return { service, adapter };
    }
    const holders = (within ? [within] : this.all()).filter((s) => s.hasAdapter(model));
    if (holders.length > 1) {
      const choices = holders.map((s) => qualifiedName(s.name, model)).join(", ");
      throw new HttpError(400, `adapter "${model}" is served by several base models; name one of: ${choices}`, param);
    }
    return holders.length === 1 ? { service: holders[0], adapter: model } : undefined;
  }

  cards(): ModelCard[] {
    const holders = new Map<string, number>();
    for (const s of this.all()) for (const a of s.adapterNames()) holders.set(a, (holders.get(a) ?? 0) + 1);
    return this.all().flatMap((s) => [
      { id: s.name, qualifiedId: s.name, parent: null, root: s.model.dir },
      ...s.adapterNames().map((a) => {
        const qualifiedId = qualifiedName(s.name, a);
        // a bare name another base holds too (or that is a base's name) is not an id a client can send
        const bare = holders.get(a) === 1 && !this.services.has(a);
        return { id: bare ? a : qualifiedId, qualifiedId, parent: s.name, root: s.adapterDir(a) };
      }),
    ]);
  }
}
