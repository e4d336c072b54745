import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readTorchBin } from "../../src/model/torch-bin.ts";
import { tensorToFloat32, WeightsFormatError } from "../../src/model/tensor.ts";
import { thrown } from "../helpers/thrown.ts";

const RU = resolve(import.meta.dir, "../fixtures/hf/models/tiny-llama2/adapters/ru/adapter_model.bin");
const tmp = mkdtempSync(join(tmpdir(), "lora-serve-torchbin-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
function writeTmp(bytes: Uint8Array): string {
  const path = join(tmp, `f${counter++}.bin`);
  writeFileSync(path, bytes);
  return path;
}

function expectError(fn: () => unknown, ...parts: string[]): void {
  const err = thrown(() => fn());
  expect(err).toBeInstanceOf(WeightsFormatError);
  for (const p of parts) expect((err as Error).message).toContain(p);
}

// ---- a tiny zip writer (stored entries; `method` only labels the entry, the bytes are not compressed) ----
function crc32(b: Uint8Array): number {
  let c = ~0;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
type Entry = { name: string; data: Uint8Array; method?: number };
function buildZip(entries: Entry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let off = 0;
  const enc = new TextEncoder();
  for (const e of entries) {
    const name = enc.encode(e.name);
    const crc = crc32(e.data);
    const local = new DataView(new ArrayBuffer(30));
    [[0, 0x04034b50, 4], [4, 20, 2], [8, e.method ?? 0, 2], [14, crc, 4], [18, e.data.length, 4], [22, e.data.length, 4], [26, name.length, 2]].forEach(([o, v, n]) =>
      n === 4 ? local.setUint32(o, v, true) : local.setUint16(o, v, true));
    const cd = new DataView(new ArrayBuffer(46));
    [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [10, e.method ?? 0, 2], [16, crc, 4], [20, e.data.length, 4], [24, e.data.length, 4], [28, name.length, 2], [42, off, 4]].forEach(([o, v, n]) =>
      n === 4 ? cd.setUint32(o, v, true) : cd.setUint16(o, v, true));
    parts.push(new Uint8Array(local.buffer), name, e.data);
    central.push(new Uint8Array(cd.buffer), name);
    off += 30 + name.length + e.data.length;
  }
  const cdSize = central.reduce((s, p) => s + p.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, entries.length, true);
  end.setUint16(10, entries.length, true);
  end.setUint32(12, cdSize, true);
  end.setUint32(16, off, true);
  return Buffer.concat([...parts, ...central, new Uint8Array(end.buffer)]);
}

// ---- a tiny protocol-2 pickle writer, emitting what torch.save emits ----
class Pickle {
  b: number[] = [0x80, 2];
  op(...xs: number[]) {
    this.b.push(...xs);
    return this;
  }
  str(s: string) {
    const u = new TextEncoder().encode(s);
    return this.op(0x58, ...new Uint8Array(new Uint32Array([u.length]).buffer), ...u);
  }
  int(n: number) {
    return n < 256 ? this.op(0x4b, n) : this.op(0x4a, ...new Uint8Array(new Int32Array([n]).buffer));
  }
  global(module: string, name: string) {
    return this.op(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  ints(xs: number[]) {
    this.op(0x28);
    xs.forEach((x) => this.int(x));
    return this.op(0x74);
  }
  bytes() {
    return new Uint8Array([...this.b, 0x2e]);
  }
}
type T = { name: string; storage?: string; key: string; numel: number; offset?: number; size: number[]; stride: number[] };
function tensorDict(tensors: T[]): Uint8Array {
  const p = new Pickle().op(0x7d, 0x28);
  for (const t of tensors) {
    p.str(t.name).global("torch._utils", "_rebuild_tensor_v2").op(0x28, 0x28).str("storage").global("torch", t.storage ?? "FloatStorage");
    p.str(t.key).str("cpu").int(t.numel).op(0x74, 0x51); // TUPLE, BINPERSID
    p.int(t.offset ?? 0).ints(t.size).ints(t.stride).op(0x89).global("collections", "OrderedDict").op(0x29, 0x52, 0x74, 0x52); // ..., REDUCE
  }
  return p.op(0x75).bytes(); // SETITEMS
}
const W: T = { name: "w", key: "0", numel: 6, size: [2, 3], stride: [3, 1] };
const STORAGE0 = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
function archive(pkl: Uint8Array, extra: Entry[] = [], storages: Record<string, Uint8Array> = { "0": STORAGE0 }): Uint8Array {
  return buildZip([
    { name: "archive/data.pkl", data: pkl },
    { name: "archive/byteorder", data: new TextEncoder().encode("little") },
    ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data })),
    ...extra,
  ]);
}

describe("the real PEFT adapter_model.bin (tiny-llama2/ru)", () => {
  const m = readTorchBin(RU);
  const P = "base_model.model.model.layers";
  // [module, lora_A shape, lora_B shape] for r = 64, hidden 32, q/k/v out 128, MLP 96
  const MODULES: [string, number[], number[]][] = [
    ["self_attn.q_proj", [64, 32], [128, 64]],
    ["self_attn.k_proj", [64, 32], [128, 64]],
    ["self_attn.v_proj", [64, 32], [128, 64]],
    ["self_attn.o_proj", [64, 128], [32, 64]],
    ["mlp.gate_proj", [64, 32], [96, 64]],
    ["mlp.up_proj", [64, 32], [96, 64]],
    ["mlp.down_proj", [64, 96], [32, 64]],
  ];

  test("28 fp16 tensors with the names and shapes PEFT expects, in file order", () => {
    const want: [string, number[]][] = [];
    for (const l of [0, 1]) for (const [mod, a, b] of MODULES) want.push([`${P}.${l}.${mod}.lora_A.weight`, a], [`${P}.${l}.${mod}.lora_B.weight`, b]);
    expect([...m].map(([k, t]) => [k, t.shape])).toEqual(want);
    for (const [k, t] of m) expect([t.name, t.dtype]).toEqual([k, "F16"]);
  });

  test("tensors are views into the mapped file at the zip entries' data offsets", () => {
    const q = m.get(`${P}.0.self_attn.q_proj.lora_A.weight`)!;
    // offsets from python: zipfile header_offset + 30 + name length + extra length of adapter_model/data/{0,1,27}
    expect(q.data.byteOffset).toBe(4096);
    expect(m.get(`${P}.0.self_attn.q_proj.lora_B.weight`)!.data.byteOffset).toBe(8320);
    expect(m.get(`${P}.1.mlp.down_proj.lora_B.weight`)!.data.byteOffset).toBe(265600);
    expect(q.data.buffer.byteLength).toBe(readFileSync(RU).length);
    for (const t of m.values()) expect(t.data.buffer).toBe(q.data.buffer);
  });

  // Reference: python3 zipfile + numpy, np.frombuffer(z.read('adapter_model/data/<key>'), '<f2'), float64 sums,
  // element values via repr(float(a[i, j])).
  test.each([
    ["0.self_attn.q_proj.lora_A", -16.45329260826111, -0.0031909942626953125, 0.05316162109375, -0.0567626953125],
    ["0.self_attn.q_proj.lora_B", 0.9088574051856995, -0.049713134765625, 0.035369873046875, 0.06024169921875],
    ["1.mlp.down_proj.lora_B", -0.5200750827789307, -0.044403076171875, -0.0200958251953125, 0.050537109375],
  ] as [string, number, number, number, number][])("values of layers.%s", (which, sum, first, last, at57) => {
    const t = m.get(`${P}.${which}.weight`)!;
    const v = tensorToFloat32(t);
    expect(v.reduce((a, b) => a + b, 0)).toBeCloseTo(sum, 9);
    expect([v[0], v[v.length - 1], v[5 * t.shape[1] + 7]]).toEqual([first, last, at57]);
  });

  test("sum and sum of squares over all 28 tensors", () => {
    let s = 0;
    let sq = 0;
    for (const t of m.values()) for (const x of tensorToFloat32(t)) (s += x), (sq += x * x);
    expect(s).toBeCloseTo(-19.511921405792236, 9);
    expect(sq).toBeCloseTo(977.3052151515366, 8);
  });
});

describe("synthetic archives", () => {
  test("a well-formed archive loads (baseline for the cases below)", () => {
    const pkl = tensorDict([W, { name: "tail", key: "0", numel: 6, offset: 2, size: [4], stride: [1] }, { name: "col", key: "0", numel: 6, size: [3, 1], stride: [1, 99] }]);
    const m = readTorchBin(writeTmp(archive(pkl)));
    expect([...m.keys()]).toEqual(["w", "tail", "col"]);
    expect(m.get("w")!.shape).toEqual([2, 3]);
    expect([...tensorToFloat32(m.get("w")!)]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...tensorToFloat32(m.get("tail")!)]).toEqual([3, 4, 5, 6]);
    expect([...tensorToFloat32(m.get("col")!)]).toEqual([1, 2, 3]); // a size-1 dim may have any stride
  });

  for (const [module, name] of [["os", "system"], ["posix", "system"], ["builtins", "eval"], ["subprocess", "Popen"]]) {
    test(`a pickle asking for ${module}.${name} is refused`, () => {
      const pkl = new Pickle().global(module, name).str("echo pwned").op(0x85, 0x52).bytes(); // TUPLE1, REDUCE
      const path = writeTmp(archive(pkl));
      expectError(() => readTorchBin(path), path, `"${module}.${name}"`, "not allowed");
    });
  }

  test("a refused global inside an otherwise valid tensor dict (via STACK_GLOBAL)", () => {
    const p = new Pickle().op(0x7d).str("w").str("builtins").str("exec").op(0x93).str("print(1)").op(0x85, 0x52, 0x73);
    const path = writeTmp(archive(p.bytes()));
    expectError(() => readTorchBin(path), path, '"builtins.exec"');
  });

  test("truncated zip (the real file cut short)", () => {
    const bytes = readFileSync(RU);
    const path = writeTmp(bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    expectError(() => readTorchBin(path), path, "no end-of-central-directory record");
  });

  test("one byte flipped inside a tensor's data: the entry's CRC-32 no longer matches", () => {
    const bytes = new Uint8Array(readFileSync(RU));
    // the middle of the archive lies inside some storage entry's data (the weights are most of the file)
    const at = Math.floor(bytes.length / 2);
    bytes[at] ^= 0x10;
    const path = writeTmp(bytes);
    expectError(() => readTorchBin(path), path, "CRC-32 mismatch");
    expect(() => readTorchBin(RU)).not.toThrow(); // the real file passes the same check
  });

  test("central directory pointing beyond the file", () => {
    const bytes = new Uint8Array(readFileSync(RU));
    const eocd = bytes.length - 22;
    new DataView(bytes.buffer).setUint32(eocd + 16, 0x7fffffff, true); // plain EOCD offset; the ZIP64 record still wins
    const z64 = Number(new DataView(bytes.buffer).getBigUint64(eocd - 12, true));
    new DataView(bytes.buffer).setBigUint64(z64 + 48, 10n ** 9n, true);
    const path = writeTmp(bytes);
    expectError(() => readTorchBin(path), path, "central directory", "beyond the end of the file");
  });

  test("entry data running past the end", () => {
    const z = archive(tensorDict([W]));
    const dv = new DataView(z.buffer, z.byteOffset);
    const cd = dv.getUint32(z.length - 6, true);
    dv.setUint32(cd + 20, 1e6, true); // first entry's sizes in the central directory
    dv.setUint32(cd + 24, 1e6, true);
    const path = writeTmp(z);
    expectError(() => readTorchBin(path), path, 'data of "archive/data.pkl"', "beyond the end");
  });

  test("compressed entry", () => {
    const z = buildZip([{ name: "archive/data.pkl", data: tensorDict([W]), method: 8 }]);
    const path = writeTmp(z);
    expectError(() => readTorchBin(path), path, '"archive/data.pkl" is compressed (method 8)');
  });

  test("non-contiguous stride", () => {
    const path = writeTmp(archive(tensorDict([W, { ...W, name: "wT", size: [3, 2], stride: [1, 3] }])));
    expectError(() => readTorchBin(path), path, 'tensor "wT"', "not contiguous");
  });

  test("tensor beyond its storage", () => {
    const path = writeTmp(archive(tensorDict([{ ...W, offset: 1 }])));
    expectError(() => readTorchBin(path), path, 'tensor "w"', "outside storage 0");
  });

  test("storage whose bytes disagree with its element count", () => {
    const path = writeTmp(archive(tensorDict([{ ...W, numel: 8 }])));
    expectError(() => readTorchBin(path), path, "storage 0", "needs 32 bytes", "has 24");
  });

  test("missing storage entry", () => {
    const path = writeTmp(archive(tensorDict([W]), [], {}));
    expectError(() => readTorchBin(path), path, "archive/data/0 is missing");
  });

  test("truncated pickle", () => {
    const pkl = tensorDict([W]);
    const path = writeTmp(archive(pkl.subarray(0, pkl.length - 20)));
    expectError(() => readTorchBin(path), path, "truncated pickle");
  });

  test("unsupported opcode", () => {
    const path = writeTmp(archive(new Pickle().global("collections", "OrderedDict").op(0x29, 0x81).bytes())); // NEWOBJ
    expectError(() => readTorchBin(path), path, "unsupported pickle opcode 0x81");
  });

  test("top level that is not a dict, and a dict value that is not a tensor", () => {
    const p1 = writeTmp(archive(new Pickle().op(0x5d).bytes()));
    expectError(() => readTorchBin(p1), p1, "top-level object is not a dict");
    const p2 = writeTmp(archive(new Pickle().op(0x7d).str("step").int(7).op(0x73).bytes()));
    expectError(() => readTorchBin(p2), p2, '"step" is not a tensor');
  });

  test("legacy (non-zip) torch.save file", () => {
    const path = writeTmp(new Uint8Array([0x80, 0x02, 0x8a, 0x0a, ...new Array(40).fill(0)]));
    expectError(() => readTorchBin(path), path, "legacy");
  });

  test("OrderedDict state dict with _metadata (BUILD) and _rebuild_parameter", () => {
    // OrderedDict() REDUCE, SETITEMS of one parameter, then BUILD with {'_metadata': {}} as torch does for state_dict()
    const p = new Pickle().global("collections", "OrderedDict").op(0x29, 0x52, 0x28).str("p");
    p.global("torch._utils", "_rebuild_parameter").op(0x28);
    const t = tensorDict([W]);
    // splice in the tensor expression from tensorDict's body: between "w" key and SETITEMS
    const body = t.subarray(2 + 2 + 6, t.length - 2);
    p.op(...body).op(0x88).global("collections", "OrderedDict").op(0x29, 0x52, 0x74, 0x52, 0x75);
    p.op(0x7d).str("_metadata").op(0x7d, 0x73, 0x62);
    const m = readTorchBin(writeTmp(archive(p.bytes())));
    expect([...tensorToFloat32(m.get("p")!)]).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
