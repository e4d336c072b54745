// Finds libloracpu.so / libloracuda.so: $LORA_SERVE_LIB_DIR, the copy embedded in a compiled
// executable (extracted once to a cache folder, since dlopen needs a real file), or build/.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { cacheRoot } from "../config/cache-root.ts";
import { dirname, join, resolve } from "node:path";

export type BackendKind = "cpu" | "cuda";

export const LIBRARY_FILE: Record<BackendKind, string> = { cpu: "libloracpu.so", cuda: "libloracuda.so" };

const repoBuildDir = resolve(import.meta.dir, "../../build");

export async function findLibrary(kind: BackendKind): Promise<string | undefined> {
  const file = LIBRARY_FILE[kind];
  const fromEnv = process.env.LORA_SERVE_LIB_DIR;
  if (fromEnv && existsSync(join(fromEnv, file))) return join(fromEnv, file);
  const embedded = findEmbedded(kind === "cpu" ? cpuLibraryStems() : ["libloracuda"]);
  if (embedded) return extractEmbedded(`${embedded.stem}.so`, new Uint8Array(await embedded.blob.arrayBuffer()));
  for (const dir of [repoBuildDir, dirname(process.execPath)]) {
    if (existsSync(join(dir, file))) return join(dir, file);
  }
  return undefined;
}

// bun build --compile names embedded files "<stem>-<hash>.<ext>"; the first stem present wins
function findEmbedded(stems: string[]): { stem: string; blob: Blob } | undefined {
  const named = (blob: Blob) => (blob as Blob & { name?: string }).name ?? "";
  for (const stem of stems) {
    const pattern = new RegExp(`^${stem}(-[a-z0-9]+)?\\.so$`);
    const found = Bun.embeddedFiles.find((blob) => pattern.test(named(blob)));
    if (found) return { stem, blob: found };
  }
  return undefined;
}

// x86-64-v3's features (Haswell, 2013, and later); /proc/cpuinfo names LZCNT "abm"
const V3_FLAGS = ["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave", "abm"];

/** The executable's CPU libraries this processor can run, fastest first. */
export function cpuLibraryStems(cpuinfo = readCpuinfo()): string[] {
  const flags = new Set(/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1].trim().split(/\s+/) ?? []);
  const v3 = V3_FLAGS.every((f) => flags.has(f));
  return [...(v3 ? ["libloracpu-x86-64-v3"] : []), "libloracpu-x86-64", "libloracpu"];
}

function readCpuinfo(): string {
  try {
    return readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return "";
  }
}

function extractEmbedded(file: string, bytes: Uint8Array): string {
  const digest = createHash("sha256").update(bytes).digest("hex").slice(0, 16);
  const dir = join(cacheRoot(), `lib-${digest}`);
  const target = join(dir, file);
  if (existsSync(target)) return target;
  mkdirSync(dir, { recursive: true });
  const partial = `${target}.${process.pid}`;
  writeFileSync(partial, bytes, { mode: 0o755 });
  renameSync(partial, target); // atomic, so concurrent starts never dlopen a half-written file
  return target;
}
