// A base model from the Hugging Face Hub, laid out as huggingface_hub lays out its cache
// (`models--org--name/blobs/<hash>`, `snapshots/<commit>/<file>` links, `refs/<revision>`), each
// blob downloaded resumably and checked against its hash.
import { listFiles, modelInfo } from "@huggingface/hub";
import { existsSync, mkdirSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { checkHubFile, hubCacheDir, type HubRepo } from "./hub-source.ts";
import { downloadResumable, type DownloadProgress, type RemoteFile } from "./resumable-download.ts";

export async function downloadHubModel(repo: HubRepo, progress: DownloadProgress, env: Record<string, string | undefined> = process.env): Promise<string> {
  const hubUrl = (env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  const accessToken = env.HF_TOKEN || undefined;
  const { sha } = await modelInfo({ name: repo.name, revision: repo.revision, hubUrl, accessToken, additionalFields: ["sha"] });
  if (!sha) throw new Error(`${repo.name}@${repo.revision}: the Hub gave no commit`);
  const storage = join(hubCacheDir(env), `models--${repo.name.replace("/", "--")}`);
  const snapshot = join(storage, "snapshots", sha);
  const files: RemoteFile[] = [];
  const links: { link: string; blob: string }[] = [];
  for await (const f of listFiles({ repo: { type: "model", name: repo.name }, revision: sha, recursive: true, hubUrl, accessToken })) {
    if (f.type !== "file") continue;
    const listed = { path: f.path, size: f.size, oid: f.oid ?? "", lfs: f.lfs };
    const blob = join(storage, "blobs", f.lfs?.oid ?? listed.oid);
    links.push({ link: join(snapshot, f.path), blob });
    files.push({
      target: blob, name: f.path, size: f.size,
      check: (path) => checkHubFile(path, listed),
      fetchFrom: async (start) => {
        const res = await fetch(`${hubUrl}/${repo.name}/resolve/${sha}/${f.path.split("/").map(encodeURIComponent).join("/")}`, {
          headers: { ...(accessToken ? { Authorization: `Bearer ${accessToken}` } : {}), ...(start > 0 ? { Range: `bytes=${start}-` } : {}) },
        });
        if (!res.ok || !res.body) throw new Error(`${f.path}: HTTP ${res.status} from the Hub`);
        return { body: res.body, resumed: start > 0 && res.status === 206 };
      },
    });
  }
  if (files.length === 0) throw new Error(`${repo.name}@${repo.revision} holds no files`);
  await downloadResumable(files, progress);
  for (const { link, blob } of links) {
    mkdirSync(dirname(link), { recursive: true });
    const target = relative(dirname(link), blob);
    if (!existsSync(link)) symlinkSync(target, link);
    else if (readlinkSync(link) !== target) throw new Error(`${link} links elsewhere`);
  }
  if (repo.revision !== sha) {
    mkdirSync(join(storage, "refs"), { recursive: true });
    writeFileSync(join(storage, "refs", repo.revision), sha);
  }
  return snapshot;
}
