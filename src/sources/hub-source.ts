// Adapters (and models) from the Hugging Face Hub through @huggingface/hub: `org/name` or
// `org/name@revision`, HF_TOKEN for private repos, HF_ENDPOINT for a mirror, HF_HOME / HF_HUB_CACHE
// for its cache. Each file is checked after download: an LFS file's sha256, another's git blob sha1.
import { listFiles, snapshotDownload } from "@huggingface/hub";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export interface HubRepo {
  name: string;
  revision: string;
}

const REPO = /^([\w.-]+\/[\w.-]+)(?:@([\w./-]+))?$/;

export const isHubRepo = (src: string): boolean => REPO.test(src) && !src.startsWith(".");

export function parseHubRepo(src: string): HubRepo {
  const m = REPO.exec(src);
  if (!m || m[1].split("/").some((part) => /^\.+$/.test(part))) throw new Error(`${JSON.stringify(src)} is not a Hub repo id (org/name or org/name@revision)`);
  return { name: m[1], revision: m[2] ?? "main" };
}

/** HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub (as huggingface_hub resolves it). */
export function hubCacheDir(env: Record<string, string | undefined>): string {
  return env.HF_HUB_CACHE ?? join(env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface"), "hub");
}

export interface HubOptions {
  env?: Record<string, string | undefined>;
  limits: { maxBytes: number; maxFiles: number };
}

/** The repo's snapshot folder in the Hub cache, downloaded where missing and every file checked. */
export async function downloadHubRepo(repo: HubRepo, o: HubOptions): Promise<string> {
  const env = o.env ?? process.env;
  const common = { repo: { type: "model" as const, name: repo.name }, hubUrl: env.HF_ENDPOINT, accessToken: env.HF_TOKEN || undefined };
  const files: { path: string; size: number; oid: string; lfs?: { oid: string } }[] = [];
  for await (const f of listFiles({ ...common, revision: repo.revision, recursive: true })) {
    if (f.type !== "file") continue;
    files.push({ path: f.path, size: f.size, oid: f.oid ?? "", lfs: f.lfs });
    if (files.length > o.limits.maxFiles) throw new Error(`${repo.name} holds more than ${o.limits.maxFiles} files`);
  }
  if (files.length === 0) throw new Error(`${repo.name}@${repo.revision} holds no files`);
  const total = files.reduce((n, f) => n + f.size, 0);
  if (total > o.limits.maxBytes) throw new Error(`${repo.name} holds ${total} bytes, over the limit of ${o.limits.maxBytes}`);
  const cacheDir = hubCacheDir(env);
  const folder = await snapshotDownload({ ...common, revision: repo.revision, cacheDir });
  for (const f of files) checkHubFile(join(folder, f.path), f);
  return folder;
}

/** Throws unless the file at `path` is the one the Hub listed: its size, and its LFS sha256 or git blob sha1. */
export function checkHubFile(path: string, f: { path: string; size: number; oid: string; lfs?: { oid: string } }): void {
  const bytes = readFileSync(path);
  if (bytes.length !== f.size) throw new Error(`${f.path}: ${bytes.length} bytes, the Hub lists ${f.size}`);
  const ok = f.lfs
    ? createHash("sha256").update(bytes).digest("hex") === f.lfs.oid
    : createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex") === f.oid;
  if (!ok) throw new Error(`${f.path}: its content does not match the Hub's hash`);
}
