// adapters.tar.gz unpacking: real archives made by the system tar and hand-built ones for each refusal.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractAdaptersTarball } from "../../src/adapters/tarball.ts";
import { loadFixtureModel, modelDir } from "../helpers/fixtures.ts";

const ADAPTERS = join(modelDir("tiny-llama2"), "adapters");
const scratch = () => mkdtempSync(join(tmpdir(), "lora-serve-tar-test-"));

/** One tar entry: a ustar header (checksum computed unless `checksum` is given) and the padded data. */
function entry(name: string, data: string | Uint8Array = "", o: { type?: string; link?: string; checksum?: number; size?: number } = {}): Uint8Array {
  const body = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const h = new Uint8Array(512);
  const put = (at: number, s: string) => h.set(new TextEncoder().encode(s), at);
  put(0, name);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, (o.size ?? body.length).toString(8).padStart(11, "0") + "\0");
  put(136, "00000000000\0");
  put(156, o.type ?? "0");
  put(157, o.link ?? "");
  put(257, "ustar\0" + "00");
  put(148, "        ");
  const sum = o.checksum ?? h.reduce((a, b) => a + b, 0);
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  const out = new Uint8Array(512 + Math.ceil(body.length / 512) * 512);
  out.set(h);
  out.set(body, 512);
  return out;
}

function pax(records: Record<string, string>): Uint8Array {
  const text = Object.entries(records).map(([k, v]) => {
    const rest = ` ${k}=${v}\n`;
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
    return `${len}${rest}`;
  }).join("");
  return entry("PaxHeaders/x", text, { type: "x" });
}

function tarGz(entries: Uint8Array[], end = true): string {
  const parts = [...entries, ...(end ? [new Uint8Array(1024)] : [])];
  const tar = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) tar.set(p, (at += p.length) - p.length);
  const file = join(scratch(), "adapters.tar.gz");
  writeFileSync(file, Bun.gzipSync(tar));
  return file;
}

function systemTar(args: string[]): string {
  const file = join(scratch(), "adapters.tar.gz");
  const p = Bun.spawnSync(["tar", "-czf", file, ...args]);
  if (p.exitCode !== 0) throw new Error(p.stderr.toString());
  return file;
}

async function storeNames(dir: string): Promise<string[]> {
  const store = (await loadFixtureModel("tiny-llama2", { maxSeqs: 1, adaptersDir: undefined })).adapters;
  const names = store.addDirectory(dir);
  for (const n of names) store.get(n); // loads and validates against the base
  return names;
}

describe("extractAdaptersTarball", () => {
  test("adapters/<name>/... from the system tar (GNU format): es and fr load", async () => {
    const dir = scratch();
    Bun.spawnSync(["mkdir", "-p", join(dir, "adapters")]);
    Bun.spawnSync(["cp", "-r", join(ADAPTERS, "es"), join(ADAPTERS, "fr"), join(dir, "adapters")]);
    const out = await extractAdaptersTarball(systemTar(["-C", dir, "adapters"]));
    expect(out.endsWith("/adapters")).toBe(true);
    expect(await storeNames(out)).toEqual(["es", "fr"]);
    expect(readFileSync(join(out, "es/adapter_model.safetensors"))).toEqual(readFileSync(join(ADAPTERS, "es/adapter_model.safetensors")));
  });

  test("<name>/... without the top folder, pax format, into a given directory", async () => {
    const into = join(scratch(), "out");
    const out = await extractAdaptersTarball(systemTar(["--format=pax", "-C", ADAPTERS, "./es", "./fr"]), into);
    expect(out).toBe(into);
    expect(await storeNames(out)).toEqual(["es", "fr"]);
  });

  test("GNU long names and pax paths", async () => {
    const long = `adapters/${"n".repeat(120)}/adapter_config.json`;
    const file = tarGz([
      entry("././@LongLink", long + "\0", { type: "L" }), entry(long.slice(0, 99), "{}"),
      pax({ path: "adapters/p/adapter_config.json" }), entry("ignored", "{\"a\":1}"),
    ]);
    const out = await extractAdaptersTarball(file);
    expect(readFileSync(join(out, "n".repeat(120), "adapter_config.json"), "utf8")).toBe("{}");
    expect(readFileSync(join(out, "p", "adapter_config.json"), "utf8")).toBe("{\"a\":1}");
    expect(existsSync(join(out, "ignored"))).toBe(false);
  });

  const refusals: [string, () => string, RegExp][] = [
    ["../ traversal", () => tarGz([entry("adapters/../../evil", "x")]), /entry "adapters\/..\/..\/evil": path traversal/],
    ["../ traversal in a pax path", () => tarGz([pax({ path: "../evil" }), entry("ok", "x")]), /entry "..\/evil": path traversal/],
    ["absolute path", () => tarGz([entry("/etc/evil", "x")]), /entry "\/etc\/evil": absolute path/],
    ["symlink", () => tarGz([entry("adapters/es/link", "", { type: "2", link: "/etc/passwd" })]), /entry "adapters\/es\/link": symbolic link not allowed/],
    ["hard link", () => tarGz([entry("adapters/es/hard", "", { type: "1", link: "x" })]), /entry "adapters\/es\/hard": hard link not allowed/],
    ["device", () => tarGz([entry("dev", "", { type: "3" })]), /entry "dev": character device not allowed/],
    ["bad checksum", () => tarGz([entry("adapters/es/a", "x", { checksum: 1234 })]), /entry "adapters\/es\/a" at byte 0: header checksum mismatch/],
    ["truncated data", () => tarGz([entry("adapters/es/a", "x".repeat(100), { size: 5000 })], false), /entry "adapters\/es\/a": truncated archive/],
    ["missing end marker", () => tarGz([entry("adapters/es/a", "x")], false), /truncated archive \(no end-of-archive marker\)/],
    ["not gzip", () => { const f = join(scratch(), "a.tar.gz"); writeFileSync(f, "plain text"); return f; }, /not a gzip file/],
    ["corrupt gzip", () => { const f = join(scratch(), "a.tar.gz"); writeFileSync(f, new Uint8Array([0x1f, 0x8b, 8, 0, 1, 2, 3])); return f; }, /gzip data is corrupt/],
    ["duplicate entry", () => tarGz([entry("a/b", "1"), entry("a/b", "2")]), /entry "a\/b": appears twice/],
  ];
  for (const [what, make, message] of refusals) {
    test(`refuses: ${what}`, async () => {
      const file = make();
      const err = await extractAdaptersTarball(file).then(() => undefined, (e: Error) => e);
      expect(err?.message).toMatch(message);
      expect(err?.message.startsWith(file)).toBe(true);
    });
  }

  test("a truncated real archive", async () => {
    const full = readFileSync(systemTar(["-C", ADAPTERS, "es"]));
    const tar = Bun.gunzipSync(full);
    const file = join(scratch(), "cut.tar.gz");
    writeFileSync(file, Bun.gzipSync(tar.subarray(0, 3000)));
    await expect(extractAdaptersTarball(file)).rejects.toThrow(/truncated archive/);
  });
});

describe("caps", () => {
  test("a gzip bomb stops at the decompressed-size cap, before it is unpacked", async () => {
    // 64 MiB of zeros in one file: a few tens of KiB compressed
    const bomb = tarGz([entry("adapters/a/adapter_model.safetensors", new Uint8Array(64 * 2 ** 20))]);
    const into = scratch();
    await expect(extractAdaptersTarball(bomb, into, { maxBytes: 2 ** 20, maxEntries: 100 })).rejects.toThrow(`decompresses to more than ${2 ** 20} bytes`);
    expect(existsSync(join(into, "adapters"))).toBe(false);
  });

  test("more entries than allowed are refused", async () => {
    const many = tarGz(Array.from({ length: 20 }, (_, i) => entry(`adapters/a/f${i}`, "x")));
    await expect(extractAdaptersTarball(many, scratch(), { maxBytes: 2 ** 20, maxEntries: 10 })).rejects.toThrow("more than 10 entries");
    expect(await extractAdaptersTarball(many, scratch(), { maxBytes: 2 ** 20, maxEntries: 20 })).toEndWith("adapters");
  });
});
