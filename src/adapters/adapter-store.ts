// Named adapters of one base model: where each lives on disk, and the host-memory copies loaded so far.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { AdapterError } from "./peft-config.ts";
import { loadLoraAdapter, type BaseModelView, type LoraAdapter } from "./lora-adapter.ts";

export class UnknownAdapterError extends Error {
  override name = "UnknownAdapterError";
}

export class AdapterStore {
  private readonly dirs = new Map<string, string>();
  private readonly loaded = new Map<string, LoraAdapter>();

  constructor(private readonly base: BaseModelView, readonly maxLoraRank: number) {}

  /** Registers every subdirectory of `dir` that holds an adapter_config.json, named after it. */
  addDirectory(dir: string): string[] {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new AdapterError(dir, "adapters directory does not exist");
    const names: string[] = [];
    for (const entry of readdirSync(dir).sort()) {
      const sub = join(dir, entry);
      if (statSync(sub).isDirectory() && existsSync(join(sub, "adapter_config.json"))) {
        this.register(entry, sub);
        names.push(entry);
      }
    }
    return names;
  }

  register(name: string, dir: string): void {
    if (!/^[\w.\-]+$/.test(name)) throw new AdapterError(name, "names may use letters, digits, '_', '-' and '.' only");
    this.dirs.set(name, resolve(dir));
    this.loaded.delete(name);
  }

  has(name: string): boolean {
    return this.dirs.has(name);
  }

  names(): string[] {
    return [...this.dirs.keys()];
  }

  /** The adapter in host memory, loading (and validating) it from disk the first time. */
  get(name: string): LoraAdapter {
    const cached = this.loaded.get(name);
    if (cached) return cached;
    const dir = this.dirs.get(name);
    if (!dir) throw new UnknownAdapterError(`adapter "${name}" is not known (known: ${this.names().join(", ") || "none"})`);
    const adapter = loadLoraAdapter(dir, name, this.base, { maxLoraRank: this.maxLoraRank });
    this.loaded.set(name, adapter);
    return adapter;
  }
}
