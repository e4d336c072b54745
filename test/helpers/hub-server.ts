// A Hugging Face Hub stand-in on loopback (HF_ENDPOINT points at it): the routes @huggingface/hub
// uses to snapshot a model repo (revision info, file tree, paths-info, resolve with byte ranges),
// serving folders of this machine. Large files are served as LFS (sha256 oid), the rest as git blobs.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

interface RepoFile {
  path: string;
  bytes: Uint8Array;
  oid: string;
  lfs?: { oid: string; size: number };
}

export interface HubServer {
  url: string;
  /** Requests to resolve/ so far, by path. */
  downloads: string[];
  /** The byte offset each ranged request to resolve/ started at. */
  ranges: { path: string; start: number }[];
  /** The next `n` downloads of `path` stop after `bytes` bytes (a dropped connection). */
  interrupt(path: string, bytes: number, n?: number): void;
  /** From now on `path` is served as `bytes`, while the listing keeps the original's hash and size. */
  tamper(path: string, bytes: Uint8Array): void;
  stop(): void;
}

const SHA = "0123456789abcdef0123456789abcdef01234567";

function repoFiles(dir: string): RepoFile[] {
  const out: RepoFile[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const bytes = new Uint8Array(readFileSync(p));
        const path = relative(dir, p);
        const blob = createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
        const lfs = path.endsWith(".safetensors") ? { oid: createHash("sha256").update(bytes).digest("hex"), size: bytes.length } : undefined;
        out.push({ path, bytes, oid: blob, lfs });
      }
    }
  };
  walk(dir);
  return out;
}

/** Serves `repos` (repo id -> local folder); a token, when given, is required on every request. */
export function startHubServer(repos: Record<string, string>, opts: { token?: string } = {}): HubServer {
  const files = new Map(Object.entries(repos).map(([id, dir]) => [id, repoFiles(dir)]));
  const downloads: string[] = [];
  const ranges: { path: string; start: number }[] = [];
  const cuts = new Map<string, { bytes: number; n: number }>();
  const served = new Map<string, Uint8Array>();
  const info = (f: RepoFile) => ({ type: "file", path: f.path, oid: f.oid, size: f.bytes.length, ...(f.lfs ? { lfs: f.lfs } : {}) });
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      if (opts.token && req.headers.get("authorization") !== `Bearer ${opts.token}`) return new Response("unauthorized", { status: 401 });
      const url = new URL(req.url);
      let m = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree|paths-info)\/([^/?]+)/.exec(url.pathname);
      if (m) {
        const repo = files.get(m[1]);
        if (!repo) return Response.json({ error: "Repository not found" }, { status: 404, headers: { "X-Error-Code": "RepoNotFound" } });
        if (m[2] === "revision") return Response.json({ _id: m[1], id: m[1], sha: SHA, private: false, gated: false, siblings: repo.map((f) => ({ rfilename: f.path })) });
        if (m[2] === "tree") return Response.json(repo.map(info));
        const { paths } = (await req.json()) as { paths: string[] };
        return Response.json(repo.filter((f) => paths.includes(f.path)).map(info));
      }
      m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
      const f = m && files.get(m[1])?.find((x) => x.path === decodeURIComponent(m![3]));
      if (!f) return new Response("not found", { status: 404, headers: { "X-Error-Code": "EntryNotFound" } });
      downloads.push(f.path);
      const range = /bytes=(\d+)-(\d*)/.exec(req.headers.get("range") ?? "");
      const start = range ? Number(range[1]) : 0, end = range && range[2] ? Number(range[2]) + 1 : f.bytes.length;
      if (range) ranges.push({ path: f.path, start });
      let body = (served.get(f.path) ?? f.bytes).subarray(start, end);
      const cut = cuts.get(f.path);
      if (cut && cut.n > 0 && body.length > 1) {
        cut.n--;
        body = body.subarray(0, cut.bytes); // the client sees a short body: a dropped download
      }
      const headers = { ETag: `"${f.lfs?.oid ?? f.oid}"`, "Accept-Ranges": "bytes", ...(range ? { "Content-Range": `bytes ${start}-${end - 1}/${f.bytes.length}` } : {}) };
      return new Response(body, { status: range ? 206 : 200, headers });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    downloads,
    ranges,
    interrupt: (path, bytes, n = 1) => void cuts.set(path, { bytes, n }),
    tamper: (path, bytes) => void served.set(path, bytes),
    stop: () => server.stop(true),
  };
}
