// PyTorch zip-format `torch.save` files (e.g. PEFT's adapter_model.bin): a dict of name → tensor.
import { DTYPE_BYTES, mapFile, numel, WeightsFormatError, type DType, type TensorView } from "./tensor.ts";
import { PickleGlobal, unpickle, type GlobalHandler } from "./unpickle.ts";
import { readZip } from "./zip.ts";

const STORAGE_DTYPES: Record<string, DType> = {
  "torch.FloatStorage": "F32",
  "torch.HalfStorage": "F16",
  "torch.BFloat16Storage": "BF16",
  "torch.DoubleStorage": "F64",
  "torch.LongStorage": "I64",
  "torch.IntStorage": "I32",
  "torch.ShortStorage": "I16",
  "torch.CharStorage": "I8",
  "torch.ByteStorage": "U8",
  "torch.BoolStorage": "BOOL",
};

class Storage {
  constructor(readonly key: string, readonly dtype: DType, readonly numel: number, readonly bytes: Uint8Array) {}
}

/** `_rebuild_tensor_v2`'s arguments, checked once the tensor's name is known. */
class Rebuilt {
  constructor(readonly args: readonly unknown[]) {}
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);
const isIntTuple = (v: unknown): v is number[] => Array.isArray(v) && v.every(isInt);

/** `copy`: read the file into memory instead of mapping it (see mapFile). */
export function readTorchBin(path: string, opts: { copy?: boolean } = {}): Map<string, TensorView> {
  const fail = (msg: string): never => {
    throw new WeightsFormatError(`${path}: ${msg}`);
  };
  const bytes = mapFile(path, 22, opts.copy);
  if (bytes[0] === 0x80) fail("legacy (pre-zip) torch.save format is not supported");
  const entries = readZip(bytes, path);

  const pkls = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) fail(`expected exactly one <archive>/data.pkl entry, found ${pkls.length}`);
  const prefix = pkls[0].slice(0, -"data.pkl".length);
  const order = entries.get(`${prefix}byteorder`);
  if (order && new TextDecoder().decode(order) !== "little") fail("big-endian tensors are not supported");

  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: unknown): Storage => {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== "storage") return fail(`unsupported persistent id ${String(pid)}`);
    const [, type, key, , count] = pid;
    const dtype = type instanceof PickleGlobal ? STORAGE_DTYPES[type.qualname] : undefined;
    if (!dtype) return fail(`storage ${String(key)} has no known storage type`);
    if (typeof key !== "string" || !isInt(count) || count < 0) return fail("malformed storage persistent id");
    const cached = storages.get(key);
    if (cached) return cached.dtype === dtype ? cached : fail(`storage ${key} is used with two dtypes`);
    const data = entries.get(`${prefix}data/${key}`);
    if (!data) return fail(`storage ${key}: zip entry ${prefix}data/${key} is missing`);
    if (data.length !== count * DTYPE_BYTES[dtype]) fail(`storage ${key}: ${count} × ${dtype} needs ${count * DTYPE_BYTES[dtype]} bytes, entry has ${data.length}`);
    const s = new Storage(key, dtype, count, data);
    storages.set(key, s);
    return s;
  };

  const globals = new Map<string, GlobalHandler>([
    ["collections.OrderedDict", (args) => (args.length === 0 ? new Map() : fail("OrderedDict with arguments"))],
    ["torch._utils._rebuild_tensor_v2", (args) => new Rebuilt(args)],
    ["torch._utils._rebuild_parameter", (args) => (args[0] instanceof Rebuilt ? args[0] : fail("_rebuild_parameter of a non-tensor"))],
    ...Object.keys(STORAGE_DTYPES).map((q): [string, GlobalHandler] => [q, null]),
  ]);
  const root = unpickle(entries.get(pkls[0])!, { file: path, globals, persistentLoad });
  if (!(root instanceof Map)) fail("top-level object is not a dict");

  const out = new Map<string, TensorView>();
  for (const [name, value] of root as Map<unknown, unknown>) {
    if (typeof name !== "string") fail(`key ${String(name)} is not a string`);
    if (!(value instanceof Rebuilt)) fail(`"${name}" is not a tensor`);
    out.set(name as string, toView(path, name as string, (value as Rebuilt).args));
  }
  return out;
}

function toView(path: string, name: string, args: readonly unknown[]): TensorView {
  const bad = (msg: string): never => {
    throw new WeightsFormatError(`${path}: tensor "${name}": ${msg}`);
  };
  const [storage, offset, size, stride] = args;
  if (args.length < 6 || !(storage instanceof Storage)) bad("malformed _rebuild_tensor_v2 arguments");
  const s = storage as Storage;
  if (!isInt(offset) || offset < 0) bad(`bad storage offset ${String(offset)}`);
  if (!isIntTuple(size) || !size.every((d) => d >= 0)) bad(`bad size ${String(size)}`);
  const shape = [...(size as number[])];
  if (!isIntTuple(stride) || stride.length !== shape.length) bad(`bad stride ${String(stride)} for size [${shape}]`);
  // Row-major contiguity as torch defines it: dims of size 1 may carry any stride.
  const n = numel(shape);
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (n !== 0 && shape[i] !== 1 && (stride as number[])[i] !== expect) bad(`stride [${stride}] is not contiguous for size [${shape}]`);
    expect *= shape[i];
  }
  const off = offset as number;
  if (!(off + n <= s.numel)) bad(`elements ${off}..${off + n} lie outside storage ${s.key} (${s.numel} elements)`);
  const b = DTYPE_BYTES[s.dtype];
  return { name, dtype: s.dtype, shape, data: s.bytes.subarray(off * b, (off + n) * b) };
}
