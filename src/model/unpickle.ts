// Strict pickle reader: only the opcodes torch.save emits, and only the globals the caller allows.
// Nothing is ever executed; a GLOBAL outside the allow-list is refused before anything else happens.
import { WeightsFormatError } from "./tensor.ts";

/** A global the pickle named (already checked against the allow-list). */
export class PickleGlobal {
  constructor(readonly qualname: string) {}
}

/** What REDUCE does with an allowed global; `null` means it may only appear as a value (e.g. a storage type). */
export type GlobalHandler = ((args: readonly unknown[]) => unknown) | null;

export interface UnpickleOptions {
  file: string;
  globals: ReadonlyMap<string, GlobalHandler>;
  persistentLoad(pid: unknown): unknown;
}

/** Dicts become Maps, lists arrays, tuples frozen arrays, ints numbers (safe integers only). */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let at = 0; // offset of the current opcode, for messages

  const fail = (msg: string): never => {
    throw new WeightsFormatError(`${opts.file}: pickle offset ${at}: ${msg}`);
  };
  const take = (n: number): number => {
    if (pos + n > data.length) fail("truncated pickle");
    const p = pos;
    pos += n;
    return p;
  };
  const u8 = () => data[take(1)];
  const u16 = () => dv.getUint16(take(2), true);
  const u32 = () => dv.getUint32(take(4), true);
  const utf8 = (n: number): string => {
    const p = take(n);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(data.subarray(p, p + n));
    } catch {
      return fail("string is not valid UTF-8");
    }
  };
  const latin1 = (n: number) => {
    const p = take(n);
    return Array.from(data.subarray(p, p + n), (c) => String.fromCharCode(c)).join("");
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail("truncated pickle (unterminated GLOBAL)");
    return utf8(end - pos + 1).slice(0, -1);
  };
  const floor = () => (marks.length ? marks[marks.length - 1] : 0);
  const pop = (): unknown => (stack.length > floor() ? stack.pop() : fail("stack underflow"));
  const top = (): unknown => (stack.length > floor() ? stack[stack.length - 1] : fail("stack underflow"));
  const popMark = (): unknown[] => {
    const m = marks.pop();
    return m === undefined ? fail("no MARK on the stack") : stack.splice(m);
  };
  const tuple = (items: unknown[]) => Object.freeze(items);
  const dict = (): Map<unknown, unknown> => {
    const d = top();
    return d instanceof Map ? d : fail("SETITEM(S) target is not a dict");
  };
  const list = (): unknown[] => {
    const l = top();
    return Array.isArray(l) && !Object.isFrozen(l) ? l : fail("APPEND(S) target is not a list");
  };
  const key = (k: unknown): unknown =>
    typeof k === "string" || typeof k === "number" || typeof k === "boolean" || k === null ? k : fail("dict key is not a string or number");
  const global = (module: string, name: string): PickleGlobal => {
    const q = `${module}.${name}`;
    if (!opts.globals.has(q)) throw new WeightsFormatError(`${opts.file}: pickle refers to global "${q}", which is not allowed; refusing to load`);
    return new PickleGlobal(q);
  };
  const int = (v: bigint): number => (Number.isSafeInteger(Number(v)) ? Number(v) : fail(`integer ${v} is too large`));

  while (true) {
    at = pos;
    const op = u8();
    switch (op) {
      case 0x80: { // PROTO
        const v = u8();
        if (v < 2 || v > 5) fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: take(8); break; // FRAME: a read-ahead hint only
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(tuple([])); break; // EMPTY_TUPLE
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x58: stack.push(utf8(u32())); break; // BINUNICODE
      case 0x8c: stack.push(utf8(u8())); break; // SHORT_BINUNICODE
      case 0x55: stack.push(latin1(u8())); break; // SHORT_BINSTRING
      case 0x54: { // BINSTRING
        const n = dv.getInt32(take(4), true);
        stack.push(n < 0 ? fail("negative string length") : latin1(n));
        break;
      }
      case 0x4a: stack.push(dv.getInt32(take(4), true)); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: { // LONG1: little-endian two's complement
        const n = u8();
        const p = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[p + i]);
        if (n > 0 && data[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(int(v));
        break;
      }
      case 0x47: stack.push(dv.getFloat64(take(8), false)); break; // BINFLOAT (big-endian)
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4e: stack.push(null); break; // NONE
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: // BINGET
      case 0x6a: { // LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        stack.push(memo.has(i) ? memo.get(i) : fail(`memo slot ${i} is empty`));
        break;
      }
      case 0x74: stack.push(tuple(popMark())); break; // TUPLE
      case 0x85: stack.push(tuple([pop()])); break; // TUPLE1
      case 0x86: { // TUPLE2
        const b = pop();
        stack.push(tuple([pop(), b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        stack.push(tuple([pop(), b, c]));
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = key(pop());
        dict().set(k, v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) fail("SETITEMS with an odd number of items");
        const d = dict();
        for (let i = 0; i < items.length; i += 2) d.set(key(items[i]), items[i + 1]);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        list().push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        list().push(...items);
        break;
      }
      case 0x63: { // GLOBAL
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL needs two strings");
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleGlobal)) fail("REDUCE of something that is not a global");
        const handler = opts.globals.get((fn as PickleGlobal).qualname);
        if (!handler) fail(`global "${(fn as PickleGlobal).qualname}" cannot be called`);
        if (!Array.isArray(args)) fail("REDUCE arguments are not a tuple");
        stack.push(handler!(args as unknown[]));
        break;
      }
      case 0x62: { // BUILD: only an OrderedDict's attribute state (e.g. state_dict._metadata), which we drop
        const state = pop();
        if (!(top() instanceof Map) || !(state instanceof Map || state === null)) fail("BUILD is only supported on a dict");
        break;
      }
      case 0x51: stack.push(opts.persistentLoad(pop())); break; // BINPERSID
      case 0x2e: { // STOP
        const result = pop();
        if (stack.length || marks.length) fail("STOP with items left on the stack");
        if (pos !== data.length) fail(`${data.length - pos} bytes after STOP`);
        return result;
      }
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, "0")}`);
    }
  }
}
