// lora-serve's own cache folder (the embedded demo model, the native libraries unpacked from the
// executable, downloads): the first candidate that can be created and written. Under a hardened
// systemd unit the home directory is read-only and systemd names the folder in $CACHE_DIRECTORY.
import { accessSync, constants, mkdirSync } from "node:fs";
import { homedir, tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { log } from "../log.ts";

type Env = Record<string, string | undefined>;

export function cacheCandidates(env: Env): string[] {
  const home = (() => {
    try {
      return homedir();
    } catch {
      return undefined; // a dynamic user may have no home
    }
  })();
  return [
    env.CACHE_DIRECTORY?.split(":")[0],
    env.XDG_CACHE_HOME && join(env.XDG_CACHE_HOME, "lora-serve"),
    home && join(home, ".cache", "lora-serve"),
    join(tmpdir(), `lora-serve-${userInfo().uid}`),
  ].filter((d): d is string => !!d);
}

function writable(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

let chosen: string | undefined;

/** The first writable candidate; said once in the log when it is not the first one tried. */
export function cacheRoot(env: Env = process.env): string {
  if (chosen !== undefined && env === process.env) return chosen;
  const candidates = cacheCandidates(env);
  const dir = candidates.find(writable);
  if (!dir) throw new Error(`no writable cache folder: tried ${candidates.join(", ")}`);
  if (dir !== candidates[0]) log.info(`cache folder ${dir} (${candidates.slice(0, candidates.indexOf(dir)).join(", ")} not writable)`);
  if (env === process.env) chosen = dir;
  return dir;
}
