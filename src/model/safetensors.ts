// Strict safetensors reader over a memory-mapped file, and HF checkpoint directories (single or sharded).
import { existsSync, readFileSync } from "node:fs";
import { join, resolve, sep } from "node:path";
import { DTYPE_BYTES, isDType, mapFile, numel, WeightsFormatError, type TensorView } from "./tensor.ts";

export { WeightsFormatError } from "./tensor.ts";

export interface SafetensorsFile {
  path: string;
  tensors: Map<string, TensorView>;
  metadata: Record<string, string>;
}

export interface Checkpoint {
  files: SafetensorsFile[];
  get(name: string): TensorView | undefined;
  names(): string[];
}

const MAX_HEADER = 100_000_000;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** `copy`: read the file into memory instead of mapping it (see mapFile). */
export function openSafetensors(path: string, opts: { copy?: boolean } = {}): SafetensorsFile {
  const fail = (msg: string): never => {
    throw new WeightsFormatError(`${path}: ${msg}`);
  };
  const bytes = mapFile(path, 8, opts.copy);
  const headerLen = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen === 0n) fail("header length is 0");
  if (headerLen > BigInt(MAX_HEADER)) fail(`header length ${headerLen} is absurd (over ${MAX_HEADER} bytes)`);
  const n = Number(headerLen);
  if (8 + n > bytes.length) fail(`header length ${n} runs beyond the end of the file (${bytes.length} bytes)`);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(header)) fail("header is not a JSON object");
  const h = header as Record<string, unknown>;

  const metadata: Record<string, string> = {};
  if (Object.hasOwn(h, "__metadata__")) {
    const m = h.__metadata__;
    if (!isPlainObject(m)) fail("__metadata__ is not an object of strings");
    for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
      if (typeof v !== "string") fail(`__metadata__["${k}"] is not a string`);
      metadata[k] = v as string;
    }
  }

  const dataStart = 8 + n;
  const dataLen = bytes.length - dataStart;
  const entries: { name: string; begin: number; end: number; view: TensorView }[] = [];
  for (const [name, e] of Object.entries(h)) {
    if (name === "__metadata__") continue;
    const bad = (msg: string): never => fail(`tensor "${name}": ${msg}`);
    if (!isPlainObject(e)) bad("entry is not an object");
    const { dtype, shape, data_offsets: offs } = e as Record<string, unknown>;
    if (!isDType(dtype)) bad(`unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isIndex)) bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isIndex)) bad(`data_offsets ${JSON.stringify(offs)} is not [begin, end]`);
    const [begin, end] = offs as number[];
    if (begin > end) bad(`data_offsets [${begin}, ${end}] has begin > end`);
    const dt = dtype as keyof typeof DTYPE_BYTES;
    const want = numel(shape as number[]) * DTYPE_BYTES[dt];
    if (end - begin !== want) bad(`${dt} ${JSON.stringify(shape)} needs ${want} bytes but data_offsets span ${end - begin}`);
    if (end > dataLen) bad(`data_offsets [${begin}, ${end}] lie outside the data section (${dataLen} bytes)`);
    const data = bytes.subarray(dataStart + begin, dataStart + end);
    entries.push({ name, begin, end, view: { name, dtype: dt, shape: shape as number[], data } });
  }

  // The format requires the tensors to tile the data section exactly: no overlaps, no holes.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev = "";
  for (const e of entries) {
    if (e.begin < pos) fail(`tensor "${e.name}" overlaps tensor "${prev}" (bytes ${e.begin}..${pos})`);
    if (e.begin > pos) fail(`hole in the data section before tensor "${e.name}" (bytes ${pos}..${e.begin})`);
    pos = e.end;
    prev = e.name;
  }
  if (pos !== dataLen) fail(`data section has ${dataLen - pos} bytes after the last tensor`);

  const tensors = new Map<string, TensorView>();
  for (const e of entries) tensors.set(e.name, e.view);
  return { path, tensors, metadata };
}

/** An HF model directory: `model.safetensors`, or shards listed by `model.safetensors.index.json`. */
export function openCheckpoint(modelDir: string): Checkpoint {
  const single = join(modelDir, "model.safetensors");
  const indexPath = join(modelDir, "model.safetensors.index.json");
  if (existsSync(single)) {
    const f = openSafetensors(single);
    return { files: [f], get: (name) => f.tensors.get(name), names: () => [...f.tensors.keys()] };
  }
  if (!existsSync(indexPath)) throw new WeightsFormatError(`${modelDir}: no model.safetensors or model.safetensors.index.json in this directory`);

  const fail = (msg: string): never => {
    throw new WeightsFormatError(`${indexPath}: ${msg}`);
  };
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (e) {
    fail(`not valid JSON: ${(e as Error).message}`);
  }
  const weightMap = isPlainObject(index) ? index.weight_map : undefined;
  if (!isPlainObject(weightMap)) fail("weight_map is missing or not an object");

  const root = resolve(modelDir);
  const shards = new Map<string, SafetensorsFile>();
  const where = new Map<string, SafetensorsFile>();
  for (const [name, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard === "") fail(`weight_map["${name}"] is not a file name`);
    const shardPath = resolve(root, shard as string);
    if (!shardPath.startsWith(root + sep)) fail(`shard "${shard}" (for tensor "${name}") is outside ${root}`);
    let f = shards.get(shardPath);
    if (!f) {
      if (!existsSync(shardPath)) fail(`shard file "${shard}" (for tensor "${name}") does not exist`);
      f = openSafetensors(shardPath);
      shards.set(shardPath, f);
    }
    if (!f.tensors.has(name)) fail(`tensor "${name}" is not in its shard ${shardPath}`);
    where.set(name, f);
  }
  return {
    files: [...shards.values()],
    get: (name) => where.get(name)?.tensors.get(name),
    names: () => [...where.keys()],
  };
}
