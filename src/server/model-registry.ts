// The models one server answers for: each base model's service, and the adapters reachable
// through it. A request's `model` names a base model or one of its adapters.
import type { EngineService } from "../engine/engine-service.ts";

export interface ModelCard {
  id: string;
  /** The base model an adapter belongs to; null for a base model. */
  parent: string | null;
  root: string;
}

export class ModelRegistry {
  private readonly services = new Map<string, EngineService>();

  add(service: EngineService): void {
    if (this.services.has(service.name)) throw new Error(`model name "${service.name}" is used twice`);
    this.services.set(service.name, service);
  }

  all(): EngineService[] {
    return [...this.services.values()];
  }

  /** The service and adapter (null = the base) that `model` names, or undefined. */
  resolve(model: string): { service: EngineService; adapter: string | null } | undefined {
    const base = this.services.get(model);
    if (base) return { service: base, adapter: null };
    for (const service of this.services.values()) {
      if (service.hasAdapter(model)) return { service, adapter: model };
    }
    return undefined;
  }

  cards(): ModelCard[] {
    return this.all().flatMap((s) => [
      { id: s.name, parent: null, root: s.model.dir },
      ...s.adapterNames().map((a) => ({ id: a, parent: s.name, root: s.adapterDir(a) })),
    ]);
  }
}
