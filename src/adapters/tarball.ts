// adapters.tar.gz (as SageMaker ships them) unpacked to a directory of adapters. The tar reader is
// strict: ustar headers with verified checksums, regular files and directories only, GNU long
// names and pax paths, no absolute paths or `..`, every entry inside the archive, an end marker.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

export class TarballError extends Error {
  override name = "TarballError";
}

const BLOCK = 512;
const dec = new TextDecoder("utf-8", { fatal: false });

interface TarEntry {
  path: string;
  type: "file" | "dir";
  data: Uint8Array;
}

export interface TarballLimits {
  /** Bytes the archive may decompress to (checked while decompressing: a gzip bomb stops here). */
  maxBytes: number;
  /** Entries (files and directories) it may hold. */
  maxEntries: number;
}

// the archive is unpacked in memory, and Node's zlib stops at 4 GiB of output
export const DEFAULT_TARBALL_LIMITS: TarballLimits = { maxBytes: 4 * 2 ** 30, maxEntries: 100_000 };

/** Unpacks `path` into `into` (default: a fresh temporary directory); returns the directory holding the adapter subdirectories. */
export async function extractAdaptersTarball(path: string, into?: string, limits: TarballLimits = DEFAULT_TARBALL_LIMITS): Promise<string> {
  const fail = (msg: string): never => {
    throw new TarballError(`${path}: ${msg}`);
  };
  const gz = readFileSync(path);
  if (gz.length < 2 || gz[0] !== 0x1f || gz[1] !== 0x8b) fail("not a gzip file");
  let tar: Uint8Array;
  try {
    tar = gunzipSync(gz, { maxOutputLength: limits.maxBytes });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") return fail(`decompresses to more than ${limits.maxBytes} bytes`);
    return fail(`gzip data is corrupt (${(e as Error).message})`);
  }
  const dest = into ?? mkdtempSync(join(tmpdir(), "lora-serve-adapters-"));
  mkdirSync(dest, { recursive: true });
  let entries = 0;
  for (const entry of readTar(tar, fail)) {
    if (++entries > limits.maxEntries) fail(`holds more than ${limits.maxEntries} entries`);
    const target = join(dest, entry.path);
    if (entry.type === "dir") {
      mkdirSync(target, { recursive: true });
      continue;
    }
    mkdirSync(join(target, ".."), { recursive: true });
    try {
      writeFileSync(target, entry.data, { flag: "wx", mode: 0o644 });
    } catch (e) {
      fail(`entry "${entry.path}": ${(e as NodeJS.ErrnoException).code === "EEXIST" ? "appears twice" : (e as Error).message}`);
    }
  }
  // `adapters/<name>/...` or `<name>/...` (unless an adapter is itself called "adapters")
  const nested = join(dest, "adapters");
  const isDir = existsSync(nested) && statSync(nested).isDirectory();
  return isDir && !existsSync(join(nested, "adapter_config.json")) ? nested : dest;
}

/** The entries of an uncompressed tar archive, each checked; `fail` throws with the message. */
export function* readTar(buf: Uint8Array, fail: (msg: string) => never): Generator<TarEntry> {
  let offset = 0;
  let longName: string | undefined;
  let pax: Record<string, string> = {};
  const globalPax: Record<string, string> = {};
  for (;;) {
    if (offset + BLOCK > buf.length) fail("truncated archive (no end-of-archive marker)");
    const header = buf.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) {
      const next = buf.subarray(offset + BLOCK, offset + 2 * BLOCK);
      if (next.length < BLOCK || !next.every((b) => b === 0)) fail("truncated archive (incomplete end-of-archive marker)");
      return;
    }
    const rawName = headerPath(header);
    const at = `entry "${rawName}" at byte ${offset}`;
    verifyHeader(header, (msg) => fail(`${at}: ${msg}`));
    const type = String.fromCharCode(header[156] || 0x30);
    const pathOf = () => longName ?? pax.path ?? globalPax.path ?? rawName;
    const size = pax.size !== undefined ? paxSize(pax.size, (m) => fail(`${at}: ${m}`)) : headerSize(header, (m) => fail(`${at}: ${m}`));
    const start = offset + BLOCK;
    if (start + size > buf.length) fail(`entry "${pathOf()}": truncated archive (${size} bytes of data, ${Math.max(0, buf.length - start)} present)`);
    const data = buf.subarray(start, start + size);
    offset = start + Math.ceil(size / BLOCK) * BLOCK;
    if (type === "L") {
      longName = cString(data);
      continue;
    }
    if (type === "x" || type === "g") {
      const records = parsePax(data, (m) => fail(`${at}: ${m}`));
      if (type === "g") Object.assign(globalPax, records);
      else pax = records;
      continue;
    }
    const name = pathOf();
    longName = undefined;
    pax = {};
    const kind = type === "0" || type === "7" ? "file" : type === "5" ? "dir" : undefined;
    if (!kind) fail(`entry "${name}": ${TYPE_NAMES[type] ?? `entry type ${JSON.stringify(type)}`} not allowed (regular files and directories only)`);
    const safe = safePath(name, (m) => fail(`entry "${name}": ${m}`));
    if (safe === "") continue; // the archive's root, "./"
    yield { path: safe, type: kind!, data };
  }
}

const TYPE_NAMES: Record<string, string> = {
  "1": "hard link", "2": "symbolic link", "3": "character device", "4": "block device", "6": "FIFO", K: "GNU long link name",
};

function verifyHeader(h: Uint8Array, fail: (msg: string) => never): void {
  const magic = dec.decode(h.subarray(257, 262));
  if (magic !== "ustar") fail("not a ustar header");
  const stored = parseOctal(h.subarray(148, 156));
  if (stored === undefined) fail("unreadable header checksum");
  let unsigned = 0, signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) fail(`header checksum mismatch (stored ${stored}, computed ${unsigned})`);
}

function headerPath(h: Uint8Array): string {
  const name = cString(h.subarray(0, 100));
  // only POSIX ustar ("ustar\0" "00") has a prefix field; GNU keeps other fields there
  const posix = h[262] === 0 && h[263] === 0x30 && h[264] === 0x30;
  const prefix = posix ? cString(h.subarray(345, 500)) : "";
  return prefix ? `${prefix}/${name}` : name;
}

function headerSize(h: Uint8Array, fail: (msg: string) => never): number {
  const field = h.subarray(124, 136);
  if (field[0] & 0x80) {
    // GNU base-256 for sizes of 8 GiB and up
    let n = field[0] & 0x7f;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i];
    if (!Number.isSafeInteger(n)) fail("size out of range");
    return n;
  }
  return parseOctal(field) ?? fail(`unreadable size field ${JSON.stringify(cString(field))}`);
}

function paxSize(v: string, fail: (msg: string) => never): number {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) ? n : fail(`pax size ${JSON.stringify(v)} is not a size`);
}

function parseOctal(field: Uint8Array): number | undefined {
  const s = cString(field).trim();
  if (!/^[0-7]+$/.test(s)) return s === "" ? 0 : undefined;
  return parseInt(s, 8);
}

function cString(b: Uint8Array): string {
  const end = b.indexOf(0);
  return dec.decode(end === -1 ? b : b.subarray(0, end));
}

/** pax records: `<length> <key>=<value>\n`, the length counting the whole record in bytes. */
function parsePax(data: Uint8Array, fail: (msg: string) => never): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    if (data[i] === 0) break;
    const space = data.indexOf(0x20, i);
    const len = space === -1 ? NaN : Number(dec.decode(data.subarray(i, space)));
    if (!Number.isSafeInteger(len) || len <= space - i || i + len > data.length || data[i + len - 1] !== 0x0a) fail(`malformed pax record at byte ${i}`);
    const record = dec.decode(data.subarray(space + 1, i + len - 1));
    const eq = record.indexOf("=");
    if (eq <= 0) fail(`malformed pax record ${JSON.stringify(record)}`);
    out[record.slice(0, eq)] = record.slice(eq + 1);
    i += len;
  }
  return out;
}

/** A relative path with no `..`; "" for the archive root. */
function safePath(name: string, fail: (msg: string) => never): string {
  if (name.includes("\0")) fail("NUL in the path");
  if (name.startsWith("/") || name.startsWith("\\") || /^[a-zA-Z]:/.test(name)) fail("absolute path not allowed");
  const parts = name.split(/[\\/]/).filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) fail("path traversal (`..`) not allowed");
  return parts.join("/");
}
