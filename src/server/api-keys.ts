// Bearer-token access as vLLM's --api-key: every route but the health checks and metrics needs
// `Authorization: Bearer <key>` with one of the configured keys. Keys are compared as SHA-256
// digests with a constant-time comparison, so neither a key's length nor its prefix leaks by timing.
import { createHash, timingSafeEqual } from "node:crypto";

const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

export class ApiKeys {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[]) {
    this.digests = keys.map(digest);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** Whether the request's Authorization header carries one of the keys (every key is compared). */
  allows(authorization: string | null): boolean {
    if (!this.enabled) return true;
    const m = /^Bearer\s+(.+)$/i.exec(authorization ?? "");
    if (!m) return false;
    const given = digest(m[1].trim());
    let ok = false;
    for (const d of this.digests) ok = timingSafeEqual(d, given) || ok;
    return ok;
  }
}
