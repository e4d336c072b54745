// Adapter sources beyond a local directory: `s3://bucket/prefix` is downloaded once into the
// download cache (keyed by the URL) and then follows the same disk -> host -> slot path.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { extractAdaptersTarball } from "../adapters/tarball.ts";
import type { DownloadCache } from "./download-cache.ts";
import { downloadHubRepo, isHubRepo, parseHubRepo } from "./hub-source.ts";
import { downloadS3Prefix, parseS3Url, s3Client, type DownloadLimits } from "./s3-source.ts";

export interface RemoteSources {
  cache: DownloadCache;
  /** Per adapter: bytes and files one download may bring. */
  limits: DownloadLimits;
  env?: Record<string, string | undefined>;
}

export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = { maxBytes: 4 * 2 ** 30, maxFiles: 64 };

/** s3://bucket/prefix, or a Hub repo id (org/name[@revision]); a local source is an absolute path. */
export const isRemoteSource = (src: string): boolean => /^s3:\/\//i.test(src) || isHubRepo(src);

/** One adapter packed as a .tar.gz (its files at the top, or in one folder), unpacked once into the cache under the tarball caps. */
export async function unpackAdapterTarball(path: string, remote: RemoteSources): Promise<string> {
  const st = statSync(path);
  const key = `tgz-${createHash("sha256").update(`${path}\0${st.size}\0${st.mtimeMs}`).digest("hex").slice(0, 16)}`;
  const dir = await remote.cache.get(key, async (into) => {
    await extractAdaptersTarball(path, into, { maxBytes: remote.limits.maxBytes, maxEntries: remote.limits.maxFiles });
  });
  if (existsSync(join(dir, "adapter_config.json"))) return dir;
  const inner = readdirSync(dir).map((n) => join(dir, n)).filter((d) => existsSync(join(d, "adapter_config.json")));
  if (inner.length !== 1) throw new Error(`the archive holds ${inner.length} adapters; give one adapter per archive`);
  return inner[0];
}

/** The local directory holding the adapter `src` names, downloading it into the cache first. */
export async function fetchRemoteAdapter(src: string, remote: RemoteSources): Promise<string> {
  if (isHubRepo(src)) return downloadHubRepo(parseHubRepo(src), { env: remote.env, limits: remote.limits });
  const loc = parseS3Url(src);
  // the URL's hash keys the entry; its tail keeps the folder readable
  const key = `s3-${createHash("sha256").update(src).digest("hex").slice(0, 16)}-${(loc.prefix.split("/").filter(Boolean).pop() ?? loc.bucket).replace(/[^\w.-]/g, "_")}`;
  return remote.cache.get(key, (into) => downloadS3Prefix(s3Client(loc.bucket, remote.env), loc, into, remote.limits));
}
