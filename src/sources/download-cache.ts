// A directory of downloaded adapters: each entry is written into a temporary folder and renamed
// into place once complete (a reader never sees half an adapter), and the least recently used
// entries are removed when the cache grows past its size cap.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from "node:fs";
import { join } from "node:path";

export class DownloadCache {
  private readonly pending = new Map<string, Promise<string>>();

  constructor(readonly dir: string, readonly maxBytes: number) {
    mkdirSync(dir, { recursive: true });
  }

  /** The entry's directory, downloading it first if absent; concurrent calls for one key share one download. */
  async get(key: string, download: (into: string) => Promise<void>): Promise<string> {
    if (!/^[\w.-]+$/.test(key)) throw new Error(`bad cache key ${JSON.stringify(key)}`);
    const target = join(this.dir, key);
    if (existsSync(target)) {
      const now = new Date();
      utimesSync(target, now, now); // recency for the size cap
      return target;
    }
    const running = this.pending.get(key);
    if (running) return running;
    const promise = (async () => {
      const partial = join(this.dir, `.partial-${key}-${process.pid}-${Date.now()}`);
      mkdirSync(partial);
      try {
        await download(partial);
        renameSync(partial, target);
      } catch (e) {
        rmSync(partial, { recursive: true, force: true });
        throw e;
      }
      this.shrink(key);
      return target;
    })().finally(() => this.pending.delete(key));
    this.pending.set(key, promise);
    return promise;
  }

  // Oldest entries go first until the cache fits; the entry just written stays.
  private shrink(keep: string): void {
    const entries = readdirSync(this.dir).filter((n) => !n.startsWith(".partial-")).map((name) => {
      const path = join(this.dir, name);
      return { name, path, bytes: sizeOf(path), used: statSync(path).mtimeMs };
    });
    let total = entries.reduce((n, e) => n + e.bytes, 0);
    for (const e of entries.sort((a, b) => a.used - b.used)) {
      if (total <= this.maxBytes) break;
      if (e.name === keep) continue;
      rmSync(e.path, { recursive: true, force: true });
      total -= e.bytes;
    }
  }
}

function sizeOf(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((n, name) => n + sizeOf(join(path, name)), 0);
}
