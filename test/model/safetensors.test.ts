import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { openCheckpoint, openSafetensors, WeightsFormatError } from "../../src/model/safetensors.ts";
import { tensorToFloat32, type TensorView } from "../../src/model/tensor.ts";
import { thrown } from "../helpers/thrown.ts";

const MODELS = resolve(import.meta.dir, "../fixtures/hf/models");
const tmp = mkdtempSync(join(tmpdir(), "lora-serve-safetensors-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
/** Write a safetensors-like file: u64 LE header length (overridable), header text, data bytes. */
function writeST(header: unknown, data: number | Uint8Array, headerLen?: bigint, dir = tmp, name?: string): string {
  const text = typeof header === "string" ? new TextEncoder().encode(header) : header instanceof Uint8Array ? header : new TextEncoder().encode(JSON.stringify(header));
  const body = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + text.length + body.length);
  new DataView(out.buffer).setBigUint64(0, headerLen ?? BigInt(text.length), true);
  out.set(text, 8);
  out.set(body, 8 + text.length);
  const path = join(dir, name ?? `t${counter++}.safetensors`);
  writeFileSync(path, out);
  return path;
}

function writeRaw(bytes: Uint8Array): string {
  const path = join(tmp, `raw${counter++}.safetensors`);
  writeFileSync(path, bytes);
  return path;
}

/** Runs fn, expects a WeightsFormatError whose message contains every part. */
function expectError(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  const err = thrown(() => fn());
  expect(err).toBeInstanceOf(WeightsFormatError);
  const msg = (err as Error).message;
  for (const p of parts) typeof p === "string" ? expect(msg).toContain(p) : expect(msg).toMatch(p);
}

const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
const VALID = {
  __metadata__: { format: "pt" },
  a: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] },
  b: { dtype: "F16", shape: [3], data_offsets: [16, 22] },
};

describe("fixture safetensors", () => {
  const files = [...new Bun.Glob("**/*.safetensors").scanSync({ cwd: MODELS })].sort();

  test("there are 15 fixture files", () => expect(files.length).toBe(15));

  test.each(files)("%s opens and matches its JSON header", (rel) => {
    const path = join(MODELS, rel);
    const raw = readFileSync(path); // independent parse of the header, for comparison only
    const n = Number(raw.readBigUInt64LE(0));
    const header = JSON.parse(raw.subarray(8, 8 + n).toString("utf8"));
    const { __metadata__: meta, ...entries } = header;
    const f = openSafetensors(path);
    expect(f.metadata).toEqual(meta ?? {});
    expect([...f.tensors.keys()].sort()).toEqual(Object.keys(entries).sort());
    const buffer = f.tensors.values().next().value!.data.buffer;
    for (const [name, e] of Object.entries<any>(entries)) {
      const t = f.tensors.get(name)!;
      expect(t.name).toBe(name);
      expect(t.dtype).toBe(e.dtype);
      expect(t.shape).toEqual(e.shape);
      // a view into the one mapped file, at the header's offsets (no copy)
      expect(t.data.buffer).toBe(buffer);
      expect(t.data.byteOffset).toBe(8 + n + e.data_offsets[0]);
      expect(t.data.byteLength).toBe(e.data_offsets[1] - e.data_offsets[0]);
      expect(Buffer.from(t.data).equals(raw.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]))).toBe(true);
    }
  });

  // Reference values: python3 + numpy on the raw bytes (np.frombuffer '<f2'/'<f4', bf16 as u16<<16 viewed as f32),
  // sum in float64, printed with repr().
  const cases: [string, string, string, number[], number, number, number, number][] = [
    ["tiny-llama2/model.safetensors", "model.embed_tokens.weight", "F16", [32000, 32], -1180.5786844491959, 0.1414794921875, -0.49755859375, -1.572265625],
    ["tiny-mistral/model.safetensors", "model.layers.2.mlp.down_proj.weight", "BF16", [64, 160], 3.4996829628944397, 0.04052734375, -0.091796875, -0.047119140625],
    ["tiny-llama2/adapters/es/adapter_model.safetensors", "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", "F32", [128, 8], 1.2315575924294535, -0.09934990108013153, -0.12827494740486145, 0.18001216650009155],
  ];
  test.each(cases)("%s %s values", (file, name, dtype, shape, sum, first, last, at13) => {
    const t = openSafetensors(join(MODELS, file)).tensors.get(name)!;
    expect(t.dtype).toBe(dtype as TensorView["dtype"]);
    expect(t.shape).toEqual(shape);
    const v = tensorToFloat32(t);
    expect(v.length).toBe(shape[0] * shape[1]);
    let s = 0;
    for (const x of v) s += x;
    expect(s).toBeCloseTo(sum, 8);
    expect(v[0]).toBe(first);
    expect(v[v.length - 1]).toBe(last);
    expect(v[1 * shape[1] + 3]).toBe(at13);
  });

  test("tiny-llama3 model.norm.weight (BF16 [16])", () => {
    const t = openSafetensors(join(MODELS, "tiny-llama3/model.safetensors")).tensors.get("model.norm.weight")!;
    const v = tensorToFloat32(t);
    expect([t.dtype, t.shape, v[0], v[3], v[15]]).toEqual(["BF16", [16], 1.078125, 1.0078125, 1.09375]);
    expect(v.reduce((a, b) => a + b, 0)).toBe(16.125);
  });

  test("openCheckpoint on a single-file model", () => {
    const c = openCheckpoint(join(MODELS, "tiny-llama2"));
    expect(c.files.length).toBe(1);
    expect(c.names().length).toBe(21);
    expect(c.get("model.embed_tokens.weight")!.shape).toEqual([32000, 32]);
    expect(c.get("lm_head.weight")!.dtype).toBe("F16");
    expect(c.get("nope")).toBeUndefined();
  });
});

describe("tensorToFloat32", () => {
  test("every f16 bit pattern matches Float16Array", () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const got = tensorToFloat32({ name: "h", dtype: "F16", shape: [65536], data: new Uint8Array(bits.buffer) });
    const want = new Float16Array(bits.buffer);
    for (let i = 0; i < 65536; i++) if (!Object.is(got[i], want[i]) && !(isNaN(got[i]) && isNaN(want[i]))) throw new Error(`f16 0x${i.toString(16)}: ${got[i]} vs ${want[i]}`);
  });

  test("bf16, f64 and misaligned f32", () => {
    const bf = new Uint16Array([0x3f80, 0xc000, 0x0001, 0x7f80, 0x8000]);
    expect([...tensorToFloat32({ name: "b", dtype: "BF16", shape: [5], data: new Uint8Array(bf.buffer) })]).toEqual([1, -2, 2 ** -133, Infinity, -0]);
    expect([...tensorToFloat32({ name: "d", dtype: "F64", shape: [2], data: new Uint8Array(new Float64Array([0.5, -3]).buffer) })]).toEqual([0.5, -3]);
    const shifted = new Uint8Array(9);
    shifted.set(f32([1.5, -7]), 1);
    expect([...tensorToFloat32({ name: "f", dtype: "F32", shape: [2], data: shifted.subarray(1) })]).toEqual([1.5, -7]);
  });

  test("refuses integer dtypes", () => {
    expectError(() => tensorToFloat32({ name: "ids", dtype: "I64", shape: [1], data: new Uint8Array(8) }), "ids", "I64");
  });
});

describe("openSafetensors rejects bad files", () => {
  test("a well-formed synthetic file opens (baseline for the cases below)", () => {
    const data = new Uint8Array(22);
    data.set(f32([1, 2, 3, 4]));
    data.set(new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0]).buffer), 16);
    const f = openSafetensors(writeST(VALID, data));
    expect([...tensorToFloat32(f.tensors.get("a")!)]).toEqual([1, 2, 3, 4]);
    expect([...tensorToFloat32(f.tensors.get("b")!)]).toEqual([1, -2, 0]);
  });

  test("missing file", () => expectError(() => openSafetensors(join(tmp, "absent.safetensors")), "absent.safetensors", "cannot open"));
  test("empty file", () => {
    const p = writeRaw(new Uint8Array(0));
    expectError(() => openSafetensors(p), p, "shorter than 8");
  });
  test("truncated file (5 bytes)", () => {
    const p = writeRaw(new Uint8Array([1, 0, 0, 0, 0]));
    expectError(() => openSafetensors(p), p, "shorter than 8");
  });
  test("header length zero", () => {
    const p = writeST("", 0);
    expectError(() => openSafetensors(p), p, "header length is 0");
  });
  test("absurd header length", () => {
    const p = writeST(VALID, 22, 1n << 40n);
    expectError(() => openSafetensors(p), p, "absurd");
  });
  test("header length beyond the file", () => {
    const p = writeST(VALID, 22, 5000n);
    expectError(() => openSafetensors(p), p, "beyond the end of the file");
  });
  test("header that is not JSON", () => {
    const p = writeST("{not json", 0);
    expectError(() => openSafetensors(p), p, "not valid UTF-8 JSON");
  });
  test("header that is not UTF-8", () => {
    const p = writeST(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 0);
    expectError(() => openSafetensors(p), p, "not valid UTF-8 JSON");
  });
  test("header that is a JSON array", () => {
    const p = writeST([1, 2], 0);
    expectError(() => openSafetensors(p), p, "not a JSON object");
  });
  test("__metadata__ with a non-string value", () => {
    const p = writeST({ ...VALID, __metadata__: { format: "pt", step: 3 } }, 22);
    expectError(() => openSafetensors(p), p, '__metadata__["step"]');
  });
  test("unknown dtype", () => {
    const p = writeST({ ...VALID, b: { dtype: "F8_E4M3", shape: [6], data_offsets: [16, 22] } }, 22);
    expectError(() => openSafetensors(p), p, 'tensor "b"', "unknown dtype", "F8_E4M3");
  });
  test("missing dtype", () => {
    const p = writeST({ ...VALID, b: { shape: [3], data_offsets: [16, 22] } }, 22);
    expectError(() => openSafetensors(p), 'tensor "b"', "unknown dtype undefined");
  });
  test("negative or fractional shape", () => {
    expectError(() => openSafetensors(writeST({ ...VALID, b: { dtype: "F16", shape: [-3], data_offsets: [16, 22] } }, 22)), 'tensor "b"', "shape [-3]");
    expectError(() => openSafetensors(writeST({ ...VALID, b: { dtype: "F16", shape: [1.5, 2], data_offsets: [16, 22] } }, 22)), 'tensor "b"', "shape");
  });
  test("data_offsets with begin > end", () => {
    expectError(() => openSafetensors(writeST({ ...VALID, b: { dtype: "F16", shape: [0], data_offsets: [22, 16] } }, 22)), 'tensor "b"', "begin > end");
  });
  test("malformed data_offsets", () => {
    expectError(() => openSafetensors(writeST({ ...VALID, b: { dtype: "F16", shape: [3], data_offsets: [16] } }, 22)), 'tensor "b"', "data_offsets");
  });
  test("dtype × shape disagrees with the byte length (lies about sizes)", () => {
    const p = writeST({ ...VALID, a: { dtype: "F32", shape: [2, 3], data_offsets: [0, 16] } }, 22);
    expectError(() => openSafetensors(p), p, 'tensor "a"', "needs 24 bytes", "span 16");
  });
  test("offsets outside the data section", () => {
    const p = writeST({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 8);
    expectError(() => openSafetensors(p), p, 'tensor "a"', "outside the data section (8 bytes)");
  });
  test("overlapping tensors", () => {
    const p = writeST({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] }, b: { dtype: "F32", shape: [2], data_offsets: [8, 16] } }, 16);
    expectError(() => openSafetensors(p), p, "overlaps", '"a"', '"b"');
  });
  test("a hole between tensors", () => {
    const p = writeST({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [12, 20] } }, 20);
    expectError(() => openSafetensors(p), p, "hole", '"b"', "8..12");
  });
  test("bytes after the last tensor", () => {
    const p = writeST({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, 12);
    expectError(() => openSafetensors(p), p, "4 bytes after the last tensor");
  });
});

describe("openCheckpoint", () => {
  const f32Entry = (begin: number, n: number) => ({ dtype: "F32", shape: [n], data_offsets: [begin * 4, (begin + n) * 4] });
  function modelDir(index: unknown, shards: Record<string, unknown>): string {
    const dir = join(tmp, `model${counter++}`);
    mkdirSync(dir);
    for (const [file, header] of Object.entries(shards)) {
      const total = Object.values(header as Record<string, { data_offsets: number[] }>).reduce((m, e) => Math.max(m, e.data_offsets[1]), 0);
      const data = new Float32Array(total / 4).map((_, i) => i + (file.startsWith("model-00002") ? 100 : 0));
      writeST(header, new Uint8Array(data.buffer), undefined, dir, file);
    }
    if (index !== undefined) writeFileSync(join(dir, "model.safetensors.index.json"), typeof index === "string" ? index : JSON.stringify(index));
    return dir;
  }
  const SHARDS = {
    "model-00001-of-00002.safetensors": { x: f32Entry(0, 2), y: f32Entry(2, 3) },
    "model-00002-of-00002.safetensors": { z: f32Entry(0, 4) },
  };
  const MAP = { x: "model-00001-of-00002.safetensors", y: "model-00001-of-00002.safetensors", z: "model-00002-of-00002.safetensors" };

  test("sharded checkpoint: each shard opened once, names from weight_map", () => {
    const c = openCheckpoint(modelDir({ metadata: {}, weight_map: MAP }, SHARDS));
    expect(c.files.length).toBe(2);
    expect(c.names().sort()).toEqual(["x", "y", "z"]);
    expect([...tensorToFloat32(c.get("y")!)]).toEqual([2, 3, 4]);
    expect([...tensorToFloat32(c.get("z")!)]).toEqual([100, 101, 102, 103]);
  });
  test("directory with neither file", () => {
    const dir = modelDir(undefined, {});
    expectError(() => openCheckpoint(dir), dir, "no model.safetensors or model.safetensors.index.json");
  });
  test("index naming a tensor its shard lacks", () => {
    const dir = modelDir({ weight_map: { ...MAP, w: "model-00002-of-00002.safetensors" } }, SHARDS);
    expectError(() => openCheckpoint(dir), "model.safetensors.index.json", 'tensor "w"', "model-00002-of-00002.safetensors");
  });
  test("index naming a missing shard file", () => {
    const dir = modelDir({ weight_map: { ...MAP, w: "model-00003-of-00002.safetensors" } }, SHARDS);
    expectError(() => openCheckpoint(dir), "model.safetensors.index.json", '"model-00003-of-00002.safetensors"', "does not exist");
  });
  test("shard outside the directory", () => {
    const dir = modelDir({ weight_map: { ...MAP, w: "../x.safetensors" } }, SHARDS);
    expectError(() => openCheckpoint(dir), '"../x.safetensors"', "outside");
    const dir2 = modelDir({ weight_map: { w: "/etc/passwd" } }, SHARDS);
    expectError(() => openCheckpoint(dir2), '"/etc/passwd"', "outside");
  });
  test("index that is not JSON or has no weight_map", () => {
    expectError(() => openCheckpoint(modelDir("{oops", SHARDS)), "model.safetensors.index.json", "not valid JSON");
    expectError(() => openCheckpoint(modelDir({ metadata: {} }, SHARDS)), "weight_map is missing");
  });
  test("a bad shard's own error surfaces", () => {
    const dir = modelDir({ weight_map: { x: "bad.safetensors" } }, {});
    writeFileSync(join(dir, "bad.safetensors"), new Uint8Array(3));
    expectError(() => openCheckpoint(dir), "bad.safetensors", "shorter than 8");
  });
});
