// Typed reads of a JSON request object: each getter returns undefined for an absent (or null)
// field and answers a wrong type with a 400 naming the field. Every field read is remembered, so a
// route can refuse the ones it never read: a field is implemented or refused, never ignored.
import { badRequest } from "./errors.ts";

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export class Fields {
  private readonly read = new Set<string>();

  /** `prefix` names nested objects in messages ("parameters."). */
  constructor(readonly obj: JsonObject, private readonly prefix = "") {}

  /** A 400 naming the first field given (not null) that nothing read and that is not `harmless`. */
  rejectUnread(harmless: readonly string[] = []): void {
    for (const [name, v] of Object.entries(this.obj)) {
      if (v === null || this.read.has(name) || harmless.includes(name)) continue;
      throw badRequest(`${this.prefix}${name} is not supported by this server`, `${this.prefix}${name}`);
    }
  }

  private fail(name: string, what: string, v: unknown): never {
    throw badRequest(`${this.prefix}${name} must be ${what}, got ${JSON.stringify(v)}`, `${this.prefix}${name}`);
  }

  raw(name: string): unknown {
    this.read.add(name);
    const v = this.obj[name];
    return v === null ? undefined : v;
  }

  has(name: string): boolean {
    return this.raw(name) !== undefined;
  }

  num(name: string): number | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(name, "a number", v);
    return v;
  }

  int(name: string, min?: number): number | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v)) this.fail(name, "an integer", v);
    if (min !== undefined && v < min) this.fail(name, `an integer >= ${min}`, v);
    return v;
  }

  bool(name: string): boolean | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") this.fail(name, "true or false", v);
    return v;
  }

  str(name: string): string | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (typeof v !== "string") this.fail(name, "a string", v);
    return v;
  }

  requiredStr(name: string): string {
    const v = this.str(name);
    if (v === undefined) throw badRequest(`${this.prefix}${name} is required`, `${this.prefix}${name}`);
    return v;
  }

  object(name: string): Fields | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (!isObject(v)) this.fail(name, "an object", v);
    return new Fields(v, `${this.prefix}${name}.`);
  }

  /** A string or a list of strings; empty strings dropped. */
  strings(name: string): string[] | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    const list = typeof v === "string" ? [v] : Array.isArray(v) && v.every((s) => typeof s === "string") ? (v as string[]) : this.fail(name, "a string or a list of strings", v);
    return list.filter((s) => s.length > 0);
  }

  /**
   * Refuses a sampling feature the engine lacks unless it has its neutral value: silently
   * ignoring e.g. a repetition penalty would return something other than what was asked.
   */
  unsupported(name: string, neutral: (v: unknown) => boolean): void {
    const v = this.raw(name);
    if (v !== undefined && !neutral(v)) throw badRequest(`${this.prefix}${name} is not supported by this server (got ${JSON.stringify(v)})`, `${this.prefix}${name}`);
  }
}
