// The adapters of one base model in their two host-side tiers: every registered adapter is on
// disk; up to `maxCpuLoras` are loaded in host memory, the least recently used idle and unpinned
// one dropped first. (The device tier is the SlotAssigner's.) Requests hold a reference on their
// adapter so it is never dropped while they wait or run.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { AdapterError } from "./peft-config.ts";
import { loadLoraAdapter, loadLoraAdapterAsync, validateLoraAdapter, type BaseModelView, type LoraAdapter } from "./lora-adapter.ts";

export class UnknownAdapterError extends Error {
  override name = "UnknownAdapterError";
}

export interface AdapterTierEvents {
  /** An adapter was read from disk into host memory, in `seconds`. */
  loaded(name: string, seconds: number): void;
  /** An adapter was dropped from host memory. */
  evicted(name: string): void;
  /** A request found its adapter in host memory. */
  hit(name: string): void;
}

const NO_EVENTS: AdapterTierEvents = { loaded() {}, evicted() {}, hit() {} };

export class AdapterStore {
  private readonly dirs = new Map<string, string>();
  /** Host tier, least recently used first (Map keeps insertion order; a use re-inserts). */
  private readonly host = new Map<string, LoraAdapter>();
  private readonly loading = new Map<string, Promise<LoraAdapter>>();
  private readonly users = new Map<string, number>();
  private readonly pinned = new Set<string>();
  private readonly generations = new Map<string, number>();
  private nextGeneration = 0;
  private readonly dropListeners = new Set<(adapter: LoraAdapter, name: string) => void>();
  private readonly loadListeners = new Set<(adapter: LoraAdapter, name: string) => void>();
  events: AdapterTierEvents = NO_EVENTS;

  constructor(private readonly base: BaseModelView, readonly maxLoraRank: number, readonly maxCpuLoras = Infinity) {}

  /**
   * Registers every subdirectory of `dir` that holds an adapter_config.json, named after it, once it
   * passes every check a load makes (weights not converted); one that fails goes to `rejected` with
   * why, and is not registered. Returns the registered names.
   */
  addDirectory(dir: string, rejected: (name: string, error: Error) => void = (_, e) => { throw e; }): string[] {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new AdapterError(dir, "adapters directory does not exist");
    const names: string[] = [];
    for (const entry of readdirSync(dir).sort()) {
      const sub = join(dir, entry);
      if (!statSync(sub).isDirectory() || !existsSync(join(sub, "adapter_config.json"))) continue;
      try {
        validateLoraAdapter(sub, entry, this.base, { maxLoraRank: this.maxLoraRank });
        this.register(entry, sub);
        names.push(entry);
      } catch (e) {
        if (!(e instanceof AdapterError)) throw e;
        rejected(entry, e);
      }
    }
    return names;
  }

  register(name: string, dir: string): void {
    if (!/^[\w.\-]+$/.test(name)) throw new AdapterError(name, "names may use letters, digits, '_', '-' and '.' only");
    this.dirs.set(name, resolve(dir));
    this.generations.set(name, this.nextGeneration++);
    this.drop(name);
  }

  /** Names this registration of the adapter: a re-registered (replaced) adapter gets a new identity. */
  identity(name: string): string {
    return `${name}#${this.generations.get(name) ?? -1}`;
  }

  /** Forgets an adapter entirely; false while requests hold it. */
  unregister(name: string): boolean {
    if (this.inUse(name)) return false;
    this.dirs.delete(name);
    this.pinned.delete(name);
    this.drop(name);
    return true;
  }

  has(name: string): boolean {
    return this.dirs.has(name);
  }

  names(): string[] {
    return [...this.dirs.keys()];
  }

  dirOf(name: string): string {
    const dir = this.dirs.get(name);
    if (!dir) throw this.unknown(name);
    return dir;
  }

  get hostCount(): number {
    return this.host.size;
  }

  isLoaded(name: string): boolean {
    return this.host.has(name);
  }

  /** A request for `name` arrives: true (and counted a hit, its recency refreshed) if it is in host memory. */
  request(name: string): boolean {
    if (!this.touch(name)) return false;
    this.events.hit(name);
    return true;
  }

  inUse(name: string): boolean {
    return (this.users.get(name) ?? 0) > 0;
  }

  acquire(name: string): void {
    this.users.set(name, (this.users.get(name) ?? 0) + 1);
  }

  release(name: string): void {
    const n = this.users.get(name) ?? 0;
    if (n <= 0) throw new Error(`adapter "${name}" released more often than acquired`);
    if (n === 1) this.users.delete(name);
    else this.users.set(name, n - 1);
    this.shrink();
  }

  /**
   * Calls `listener` with each adapter object leaving host memory (least recently used, replaced or
   * unregistered), after events.evicted; returns its removal. Unlike `events` (metrics, replaced
   * wholesale) this is for owners of per-adapter resources: LoraSlots frees the adapter's packed
   * pinned image here.
   */
  onDrop(listener: (adapter: LoraAdapter, name: string) => void): () => void {
    this.dropListeners.add(listener);
    return () => this.dropListeners.delete(listener);
  }

  /** Calls `listener` with each adapter object entering host memory (LoraSlots packs its upload image then). */
  onLoad(listener: (adapter: LoraAdapter, name: string) => void): () => void {
    this.loadListeners.add(listener);
    return () => this.loadListeners.delete(listener);
  }

  /** A pinned adapter stays in host memory until unpinned. */
  setPinned(name: string, pinned: boolean): void {
    if (pinned) this.pinned.add(name);
    else this.pinned.delete(name);
    this.shrink();
  }

  get pinnedCount(): number {
    return this.pinned.size;
  }

  isPinned(name: string): boolean {
    return this.pinned.has(name);
  }

  /** Every check a load makes, without reading the weights into host memory (AdapterError if one fails). */
  validate(name: string): void {
    this.validateDir(name, this.dirOf(name));
  }

  /** The same checks for an adapter directory not (yet) registered under `name`. */
  validateDir(name: string, dir: string): void {
    validateLoraAdapter(dir, name, this.base, { maxLoraRank: this.maxLoraRank });
  }

  /** The adapter in host memory, loading it synchronously on a miss (offline use). */
  get(name: string): LoraAdapter {
    const cached = this.touch(name);
    if (cached) return cached;
    const t0 = performance.now();
    return this.insert(name, loadLoraAdapter(this.dirOf(name), name, this.base, { maxLoraRank: this.maxLoraRank }), t0);
  }

  /** The adapter in host memory; a miss loads it without blocking the event loop for long. */
  async load(name: string): Promise<LoraAdapter> {
    const cached = this.touch(name);
    if (cached) return cached;
    const pending = this.loading.get(name);
    if (pending) return pending;
    const dir = this.dirOf(name);
    const t0 = performance.now();
    const promise = loadLoraAdapterAsync(dir, name, this.base, { maxLoraRank: this.maxLoraRank })
      .then((adapter) => (this.dirs.get(name) === dir ? this.insert(name, adapter, t0) : adapter))
      .finally(() => this.loading.delete(name));
    this.loading.set(name, promise);
    return promise;
  }

  private touch(name: string): LoraAdapter | undefined {
    const cached = this.host.get(name);
    if (!cached) return undefined;
    this.host.delete(name);
    this.host.set(name, cached);
    return cached;
  }

  private insert(name: string, adapter: LoraAdapter, startedAt: number): LoraAdapter {
    this.host.set(name, adapter);
    this.events.loaded(name, (performance.now() - startedAt) / 1000);
    for (const listener of this.loadListeners) listener(adapter, name);
    this.shrink();
    return adapter;
  }

  // Over capacity, drop the least recently used adapters that nobody holds; if all are held the
  // tier stays over its size until they are released.
  private shrink(): void {
    for (const name of this.host.keys()) {
      if (this.host.size <= this.maxCpuLoras) return;
      if (!this.inUse(name) && !this.pinned.has(name)) this.drop(name);
    }
  }

  private drop(name: string): void {
    const adapter = this.host.get(name);
    if (!adapter) return;
    this.host.delete(name);
    this.events.evicted(name);
    for (const listener of this.dropListeners) listener(adapter, name);
  }

  private unknown(name: string): UnknownAdapterError {
    return new UnknownAdapterError(`adapter "${name}" is not known (known: ${this.names().join(", ") || "none"})`);
  }
}
