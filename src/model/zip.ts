// Minimal ZIP reader for torch.save archives: stored (uncompressed) entries only, ZIP64 aware,
// every entry's CRC-32 checked.
import { WeightsFormatError } from "./tensor.ts";

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

/** Entry name → its bytes, a view into `bytes`. */
export function readZip(bytes: Uint8Array, file: string): Map<string, Uint8Array> {
  const fail = (msg: string): never => {
    throw new WeightsFormatError(`${file}: ${msg}`);
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.length;
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number, what: string): number => {
    const v = Number(dv.getBigUint64(o, true));
    return Number.isSafeInteger(v) ? v : fail(`${what} ${v} is too large`);
  };
  const need = (o: number, n: number, what: string) => {
    if (o < 0 || o + n > len) fail(`${what} at offset ${o} (+${n} bytes) lies beyond the end of the file (${len} bytes)`);
  };

  // The end record sits in the last 22 + 65535 bytes; require its comment to end exactly at EOF.
  let eocd = -1;
  for (let o = len - 22; o >= Math.max(0, len - 22 - 0xffff); o--) {
    if (u32(o) === EOCD && o + 22 + u16(o + 20) === len) {
      eocd = o;
      break;
    }
  }
  if (eocd < 0) fail("not a zip archive, or truncated (no end-of-central-directory record)");
  if (u16(eocd + 4) !== 0 || u16(eocd + 6) !== 0) fail("multi-disk zip archives are not supported");
  let count = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  if (eocd >= 20 && u32(eocd - 20) === ZIP64_LOCATOR) {
    const at = u64(eocd - 12, "ZIP64 end record offset");
    need(at, 56, "ZIP64 end record");
    if (u32(at) !== ZIP64_EOCD) fail(`no ZIP64 end record at offset ${at}`);
    count = u64(at + 32, "entry count");
    cdSize = u64(at + 40, "central directory size");
    cdOffset = u64(at + 48, "central directory offset");
  } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    fail("ZIP64 sizes without a ZIP64 end record");
  }
  need(cdOffset, cdSize, "central directory");

  const out = new Map<string, Uint8Array>();
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const text = (from: number, n: number): string => {
    try {
      return utf8.decode(bytes.subarray(from, from + n));
    } catch {
      return fail(`entry name at offset ${from} is not valid UTF-8`);
    }
  };
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    need(p, 46, `central directory entry ${i}`);
    if (u32(p) !== CENTRAL) fail(`bad central directory entry ${i} at offset ${p}`);
    const flags = u16(p + 8);
    const method = u16(p + 10);
    const crc = u32(p + 16);
    let csize = u32(p + 20);
    let usize = u32(p + 24);
    const nameLen = u16(p + 28);
    const extraLen = u16(p + 30);
    const commentLen = u16(p + 32);
    let local = u32(p + 42);
    need(p + 46, nameLen + extraLen + commentLen, `central directory entry ${i} name`);
    const name = text(p + 46, nameLen);
    // ZIP64 extra field: the 64-bit values of the fields saturated at 0xffffffff, in this order.
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen; ) {
      const id = u16(e);
      const size = u16(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        const take = (what: string) => {
          if (q + 8 > e + 4 + size) fail(`entry "${name}": short ZIP64 extra field`);
          const v = u64(q, what);
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = take("size");
        if (csize === 0xffffffff) csize = take("compressed size");
        if (local === 0xffffffff) local = take("local header offset");
      }
      e += 4 + size;
    }
    p += 46 + nameLen + extraLen + commentLen;

    if (flags & 1) fail(`entry "${name}" is encrypted`);
    if (method !== 0) fail(`entry "${name}" is compressed (method ${method}); only stored entries are supported`);
    if (csize !== usize) fail(`entry "${name}" is stored but its sizes differ (${csize} vs ${usize})`);
    if (out.has(name)) fail(`duplicate entry "${name}"`);
    need(local, 30, `local header of "${name}"`);
    if (u32(local) !== LOCAL) fail(`entry "${name}": no local header at offset ${local}`);
    const lName = u16(local + 26);
    const lExtra = u16(local + 28);
    need(local + 30, lName + lExtra, `local header of "${name}"`);
    if (text(local + 30, lName) !== name) fail(`entry "${name}": local header names a different file`);
    const start = local + 30 + lName + lExtra;
    need(start, usize, `data of "${name}"`);
    if (start + usize > cdOffset) fail(`data of "${name}" runs into the central directory`);
    const data = bytes.subarray(start, start + usize);
    // a corrupted byte inside a tensor would otherwise load as a silently wrong weight
    if (Bun.hash.crc32(data) >>> 0 !== crc) fail(`entry "${name}": CRC-32 mismatch (the data is corrupt)`);
    out.set(name, data);
  }
  if (p !== cdOffset + cdSize) fail(`central directory size ${cdSize} does not match its ${count} entries`);
  return out;
}
