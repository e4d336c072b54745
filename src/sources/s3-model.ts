// A base model from s3://bucket/prefix into the local model cache, each object fetched resumably
// (ranged reads from where the last attempt stopped) and checked against its size and ETag.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { downloadResumable, type DownloadProgress } from "./resumable-download.ts";
import { listS3Objects, parseS3Url, s3Client, s3Files } from "./s3-source.ts";

// a model is one download: far larger than an adapter's limits
const MODEL_LIMITS = { maxBytes: 2 ** 40, maxFiles: 10_000 };

export async function downloadS3Model(url: string, cacheRoot: string, progress: DownloadProgress, env: Record<string, string | undefined> = process.env): Promise<string> {
  const loc = parseS3Url(url);
  const client = s3Client(loc.bucket, env);
  const dir = join(cacheRoot, `s3-${createHash("sha256").update(url.replace(/\/+$/, "")).digest("hex").slice(0, 16)}`);
  const objects = await listS3Objects(client, loc, MODEL_LIMITS);
  await downloadResumable(s3Files(client, objects, dir), progress);
  return dir;
}
