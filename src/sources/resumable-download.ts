// Files fetched into a folder so that an interrupted transfer continues where it stopped: each file
// grows in `<name>.incomplete` (kept across runs), is requested again from its current length, is
// checked when complete, and only then takes its name.
import { appendFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export interface RemoteFile {
  /** Where the file goes. */
  target: string;
  /** Its name for messages. */
  name: string;
  size: number;
  /** The bytes from `start` to the end; `resumed` false where the source ignored the offset and starts over. */
  fetchFrom(start: number): Promise<{ body: ReadableStream<Uint8Array>; resumed: boolean }>;
  /** Throws where the complete file's content is not what the source listed. */
  check(path: string): void;
}

export interface DownloadProgress {
  begin(files: number, bytes: number): void;
  /** A file starts (after `have` bytes already on disk). */
  file(name: string, size: number, have: number): void;
  advance(bytes: number): void;
  end(): void;
}

export const SILENT_PROGRESS: DownloadProgress = { begin() {}, file() {}, advance() {}, end() {} };

/** Fetches every file not yet in place; up to `attempts` tries a file, each resuming the last. */
export async function downloadResumable(files: RemoteFile[], progress: DownloadProgress, attempts = 3): Promise<void> {
  progress.begin(files.length, files.reduce((n, f) => n + f.size, 0));
  try {
    for (const f of files) await downloadOne(f, progress, attempts);
  } finally {
    progress.end();
  }
}

async function downloadOne(f: RemoteFile, progress: DownloadProgress, attempts: number): Promise<void> {
  if (existsSync(f.target) && statSync(f.target).size === f.size) {
    progress.file(f.name, f.size, f.size);
    progress.advance(f.size);
    return;
  }
  const partial = `${f.target}.incomplete`;
  mkdirSync(dirname(f.target), { recursive: true });
  let have = existsSync(partial) ? statSync(partial).size : 0;
  if (have > f.size) have = 0;
  progress.file(f.name, f.size, have);
  progress.advance(have);
  for (let attempt = 1; have < f.size; attempt++) {
    if (attempt > attempts) {
      throw new Error(`${f.name}: the download stopped at ${have} of ${f.size} bytes ${attempts} times; starting again resumes it`);
    }
    const { body, resumed } = await f.fetchFrom(have);
    if (!resumed || have === 0) {
      progress.advance(-have);
      have = 0;
      writeFileSync(partial, new Uint8Array(0));
    }
    try {
      for await (const chunk of body) {
        if (have + chunk.length > f.size) throw new Error(`${f.name}: more bytes than the listed ${f.size}`);
        appendFileSync(partial, chunk);
        have += chunk.length;
        progress.advance(chunk.length);
      }
    } catch (e) {
      if (/more bytes than/.test((e as Error).message)) throw e;
      // a dropped connection: the next attempt resumes from what arrived
    }
  }
  try {
    f.check(partial);
  } catch (e) {
    rmSync(partial, { force: true }); // a corrupt file is fetched anew next time
    throw e;
  }
  renameSync(partial, f.target);
}
