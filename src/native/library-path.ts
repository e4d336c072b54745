// Finds libloracpu.so / libloracuda.so: $LORA_SERVE_LIB_DIR, the copy embedded in a compiled
// executable (extracted once to a cache folder, since dlopen needs a real file), or build/.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { cacheRoot } from "../config/cache-root.ts";
import { dirname, join, resolve } from "node:path";

export type BackendKind = "cpu" | "cuda";

export const LIBRARY_FILE: Record<BackendKind, string> = { cpu: "libloracpu.so", cuda: "libloracuda.so" };

const repoBuildDir = resolve(import.meta.dir, "../../build");

export async function findLibrary(kind: BackendKind): Promise<string | undefined> {
  const file = LIBRARY_FILE[kind];
  const fromEnv = process.env.LORA_SERVE_LIB_DIR;
  if (fromEnv && existsSync(join(fromEnv, file))) return join(fromEnv, file);
  // bun build --compile names embedded files "<stem>-<hash>.<ext>"
  const embeddedName = new RegExp(`^${file.replace(".so", "")}(-[a-z0-9]+)?\\.so$`);
  const embedded = Bun.embeddedFiles.find((blob) => embeddedName.test((blob as Blob & { name?: string }).name ?? ""));
  if (embedded) return extractEmbedded(file, new Uint8Array(await embedded.arrayBuffer()));
  for (const dir of [repoBuildDir, dirname(process.execPath)]) {
    if (existsSync(join(dir, file))) return join(dir, file);
  }
  return undefined;
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
