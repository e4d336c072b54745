// Who may change the adapters at run time, and from where: runtime loading is off unless the
// operator enables it, and a local source must resolve (symlinks followed) under an allowed root.
import { existsSync, realpathSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";
import { fetchRemoteAdapter, isRemoteSource, unpackAdapterTarball, type RemoteSources } from "../sources/remote-source.ts";
import { HttpError } from "./errors.ts";

export interface AdapterPolicy {
  /** --enable-runtime-lora-updating (or VLLM_ALLOW_RUNTIME_LORA_UPDATING): the load / unload routes answer. */
  runtimeUpdates: boolean;
  /** Directories runtime-loaded adapters must lie under (resolved, symlinks followed). */
  allowedRoots: string[];
  /** Where s3:// sources download to; without it they are refused. */
  remote?: RemoteSources;
}

export const NO_RUNTIME_UPDATES: AdapterPolicy = { runtimeUpdates: false, allowedRoots: [] };

/** The local directory of a source the client sent: a remote one downloaded, a local one checked against the roots. */
export async function adapterSourceDir(policy: AdapterPolicy, src: string, param: string): Promise<string> {
  const tarball = /\.(tar\.gz|tgz)$/i.test(src);
  if (!isRemoteSource(src) && !tarball) return checkAdapterPath(policy, src, param);
  if (!policy.remote) throw new HttpError(400, `${JSON.stringify(src)}: this server has no download cache for remote or packed adapters`, param);
  try {
    return tarball ? await unpackAdapterTarball(checkAdapterPath(policy, src, param), policy.remote) : await fetchRemoteAdapter(src, policy.remote);
  } catch (e) {
    if (e instanceof HttpError) throw e;
    throw new HttpError(400, `${JSON.stringify(src)} could not be fetched: ${(e as Error).message}`, param);
  }
}

export function requireRuntimeUpdates(policy: AdapterPolicy): void {
  if (!policy.runtimeUpdates) {
    throw new HttpError(403, "runtime adapter loading is disabled on this server (start it with --enable-runtime-lora-updating)");
  }
}

/** The source path if it lies under an allowed root once resolved; messages echo only what the client sent. */
export function checkAdapterPath(policy: AdapterPolicy, path: string, param: string): string {
  const refuse = () => new HttpError(403, `${JSON.stringify(path)} is outside the directories adapters may be loaded from`, param);
  if (!isAbsolute(path)) throw badPath(path, "must be an absolute path", param);
  if (!existsSync(path)) throw badPath(path, "does not exist", param);
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    throw refuse();
  }
  const inside = policy.allowedRoots.some((root) => {
    const r = relative(rootPath(root), real);
    return r === "" || (!r.startsWith("..") && !isAbsolute(r));
  });
  if (!inside) throw refuse();
  return path;
}

function rootPath(root: string): string {
  try {
    return realpathSync(root);
  } catch {
    return resolve(root);
  }
}

function badPath(path: string, why: string, param: string): HttpError {
  return new HttpError(400, `${JSON.stringify(path)} ${why}`, param);
}
