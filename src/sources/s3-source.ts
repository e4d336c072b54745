// Adapters in S3 (or any S3-compatible store) through Bun's S3 client: every object under the
// prefix is downloaded and checked against its listed size and, for single-part uploads, its MD5 ETag.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, normalize } from "node:path";
import { downloadResumable, SILENT_PROGRESS, type RemoteFile } from "./resumable-download.ts";

export interface S3Location {
  bucket: string;
  prefix: string;
}

export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/?(.*)$/.exec(url);
  if (!m) throw new Error(`${JSON.stringify(url)} is not an s3://bucket/prefix URL`);
  const prefix = m[2].replace(/\/+$/, "");
  return { bucket: m[1], prefix: prefix === "" ? "" : `${prefix}/` };
}

/** The client for a bucket, from the usual AWS variables (AWS_ENDPOINT_URL(_S3) for other stores). */
export function s3Client(bucket: string, env: Record<string, string | undefined> = process.env): Bun.S3Client {
  return new Bun.S3Client({
    bucket,
    accessKeyId: env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    sessionToken: env.AWS_SESSION_TOKEN,
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION,
    endpoint: env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL,
  });
}

export interface DownloadLimits {
  maxBytes: number;
  maxFiles: number;
}

export interface S3Object {
  key: string;
  /** Its path below the prefix (checked: it cannot leave the folder it is written to). */
  rel: string;
  size: number;
  eTag?: string;
}

/** Every object under the location, refusing more than the limits allow. */
export async function listS3Objects(client: Bun.S3Client, loc: S3Location, limits: DownloadLimits): Promise<S3Object[]> {
  const objects: S3Object[] = [];
  let token: string | undefined;
  do {
    const page = await client.list({ prefix: loc.prefix, continuationToken: token });
    for (const o of page.contents ?? []) {
      const rel = normalize(o.key.slice(loc.prefix.length));
      if (rel === "" || rel === "." || rel.startsWith("..") || rel.startsWith("/")) throw new Error(`object key ${JSON.stringify(o.key)} leaves its prefix`);
      objects.push({ key: o.key, rel, size: o.size ?? 0, eTag: o.eTag });
    }
    token = page.isTruncated ? page.nextContinuationToken : undefined;
  } while (token);
  if (objects.length === 0) throw new Error(`nothing under s3://${loc.bucket}/${loc.prefix}`);
  if (objects.length > limits.maxFiles) throw new Error(`s3://${loc.bucket}/${loc.prefix} holds ${objects.length} objects, over the limit of ${limits.maxFiles}`);
  const total = objects.reduce((n, o) => n + o.size, 0);
  if (total > limits.maxBytes) throw new Error(`s3://${loc.bucket}/${loc.prefix} holds ${total} bytes, over the limit of ${limits.maxBytes}`);
  return objects;
}

/** Throws unless `bytes` are the object as listed: its size, and its MD5 where the ETag is one. */
export function checkS3Object(o: S3Object, bytes: Uint8Array): void {
  if (bytes.length !== o.size) throw new Error(`${o.key}: got ${bytes.length} bytes, the listing says ${o.size}`);
  const etag = o.eTag?.replace(/"/g, "");
  // a multipart upload's ETag is not an MD5 of the object (it carries a "-N" suffix)
  if (etag && !etag.includes("-") && createHash("md5").update(bytes).digest("hex") !== etag) throw new Error(`${o.key}: its MD5 does not match the ETag`);
}

/** The objects as resumable downloads into `dir` (ranged reads from where an attempt stopped, each checked). */
export function s3Files(client: Bun.S3Client, objects: S3Object[], dir: string): RemoteFile[] {
  return objects.map((o) => ({
    target: join(dir, o.rel), name: o.rel, size: o.size,
    check: (path) => checkS3Object(o, new Uint8Array(readFileSync(path))),
    fetchFrom: async (start) => ({ body: client.file(o.key).slice(start).stream(), resumed: true }),
  }));
}

/** Downloads every object under the location into `into`. */
export async function downloadS3Prefix(client: Bun.S3Client, loc: S3Location, into: string, limits: DownloadLimits): Promise<void> {
  await downloadResumable(s3Files(client, await listS3Objects(client, loc, limits), into), SILENT_PROGRESS);
}
