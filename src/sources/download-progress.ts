// How a model download shows itself: a byte progress bar on a terminal, a line a file otherwise.
import { SingleBar } from "cli-progress";
import type { DownloadProgress } from "./resumable-download.ts";

export function downloadProgress(label: string, log: (line: string) => void, tty = Boolean(process.stderr.isTTY)): DownloadProgress {
  if (!tty) {
    return {
      begin: (files, bytes) => log(`${label}: ${files} files, ${(bytes / 2 ** 20).toFixed(1)} MiB`),
      file: (name, size, have) => log(`${label}: ${name} (${(size / 2 ** 20).toFixed(1)} MiB${have > 0 ? `, resuming at ${(have / 2 ** 20).toFixed(1)} MiB` : ""})`),
      advance() {},
      end() {},
    };
  }
  const bar = new SingleBar({ format: `  ${label} {bar} {percentage}% {value}/{total} MiB {file}`, hideCursor: true });
  let done = 0;
  return {
    begin: (_, bytes) => bar.start(Math.ceil(bytes / 2 ** 20), 0, { file: "" }),
    file: (name) => bar.update({ file: name }),
    advance: (bytes) => bar.update(Math.floor((done += bytes) / 2 ** 20)),
    end: () => bar.stop(),
  };
}
