// `--model` (LMI's OPTION_MODEL_ID) as a local folder, a Hub repo id or an s3:// prefix: the
// remote ones are downloaded (resumably, with progress) and served from their local copy.
import { join } from "node:path";
import { downloadProgress } from "./download-progress.ts";
import { downloadHubModel } from "./hub-model.ts";
import { isHubRepo, parseHubRepo } from "./hub-source.ts";
import { isRemoteSource } from "./remote-source.ts";
import { downloadS3Model } from "./s3-model.ts";

export async function localModelDir(src: string, o: { cacheRoot: string; log: (line: string) => void; env?: Record<string, string | undefined> }): Promise<string> {
  if (!isRemoteSource(src)) return src;
  const progress = downloadProgress(src, o.log);
  const dir = isHubRepo(src) ? await downloadHubModel(parseHubRepo(src), progress, o.env) : await downloadS3Model(src, join(o.cacheRoot, "models"), progress, o.env);
  o.log(`${src}: in ${dir}`);
  return dir;
}
