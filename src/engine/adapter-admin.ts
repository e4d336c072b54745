// Adapters registered, pinned and unloaded at run time on one model's service: a replacement is
// checked before the old weights go, pins stay below the device slots, and an unload drains the
// adapter's requests (new ones refused meanwhile) before it goes.
import type { AdapterStore } from "../adapters/adapter-store.ts";
import { UnknownAdapterError } from "../adapters/adapter-store.ts";
import { AdapterError } from "../adapters/peft-config.ts";
import type { Engine } from "./engine.ts";
import { AdapterBusyError, PinLimitError } from "./service-errors.ts";

export class AdapterAdmin {
  /** Adapters being unloaded: refused to new requests while their accepted ones finish. */
  private readonly draining = new Set<string>();

  constructor(private readonly adapters: AdapterStore, private readonly engine: Engine) {}

  isDraining(name: string): boolean {
    return this.draining.has(name);
  }

  /** Registers (and checks) an adapter; `preload` (default) also reads it into host memory now. */
  async load(name: string, path: string, opts: { pin?: boolean; preload?: boolean } = {}): Promise<void> {
    const adapters = this.adapters;
    if (opts.pin) this.checkPinCap(name);
    if (adapters.has(name) && adapters.inUse(name)) throw new AdapterBusyError(`adapter "${name}" has requests in flight; it cannot be replaced now`);
    if (adapters.has(name)) {
      adapters.validateDir(name, path); // a replacement must pass every check before the old weights go
      this.engine.evictFromSlot(name);
    }
    adapters.register(name, path);
    try {
      if (opts.preload === false && !opts.pin) adapters.validate(name);
      else await adapters.load(name);
    } catch (e) {
      adapters.unregister(name);
      throw e instanceof AdapterError ? e : new AdapterError(name, (e as Error).message);
    }
    if (opts.pin) adapters.setPinned(name, true);
  }

  /** Keeps a registered adapter in host memory and in a device slot once it has one (or lets it go). */
  async pin(name: string, pinned = true): Promise<void> {
    const adapters = this.adapters;
    if (!adapters.has(name)) throw new UnknownAdapterError(`adapter "${name}" is not known`);
    if (pinned) {
      this.checkPinCap(name);
      await adapters.load(name);
    }
    adapters.setPinned(name, pinned);
  }

  // pins stay below the device slots, so an unpinned adapter always finds one
  private checkPinCap(name: string): void {
    const adapters = this.adapters, cap = this.engine.slots.numSlots - 1;
    if (!adapters.isPinned(name) && adapters.pinnedCount >= cap) {
      throw new PinLimitError(`pinning "${name}" would pin ${adapters.pinnedCount + 1} adapters; at most ${cap} (max_loras - 1) may be pinned`);
    }
  }

  /**
   * Unregisters an adapter. With requests in flight it drains: new requests for it are refused, the
   * ones accepted finish, then it goes (AdapterBusyError past `timeoutMs`, or at once with `wait: false`).
   */
  async unload(name: string, opts: { wait?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const adapters = this.adapters;
    if (!adapters.has(name) || this.draining.has(name)) throw new UnknownAdapterError(`adapter "${name}" is not known`);
    if (adapters.inUse(name)) {
      if (opts.wait === false) throw new AdapterBusyError(`adapter "${name}" has requests in flight; unload it when they finish (or wait for them)`);
      this.draining.add(name);
      try {
        const end = Date.now() + (opts.timeoutMs ?? 30_000);
        while (adapters.inUse(name) && Date.now() < end) await Bun.sleep(10);
        if (adapters.inUse(name)) throw new AdapterBusyError(`adapter "${name}" still had requests in flight after ${(opts.timeoutMs ?? 30_000) / 1000} s; it stays loaded`);
      } finally {
        this.draining.delete(name);
      }
    }
    this.engine.evictFromSlot(name);
    adapters.unregister(name);
  }
}
