// The server a serving benchmark measures: a lora-serve it starts itself (a child process on a free
// loopback port, stopped with SIGTERM afterwards), or any OpenAI-compatible URL.
import { existsSync } from "node:fs";
import { join } from "node:path";

export interface Target {
  url: string;
  /** Base model and adapter names the target lists in /v1/models. */
  models: { id: string; parent: string | null }[];
  /** The server's process id where this program started it. */
  pid?: number;
  stop(): Promise<void>;
}

const MAIN = join(import.meta.dir, "..", "..", "cli", "main.ts");

/** argv that runs `lora-serve serve ...`: this executable itself when compiled, else bun with main.ts. */
function serveCommand(args: string[]): string[] {
  return existsSync(MAIN) ? [process.execPath, MAIN, "serve", ...args] : [process.execPath, "serve", ...args];
}

export async function startLoraServe(args: string[], opts: { startTimeoutMs?: number; log?: (line: string) => void; env?: Record<string, string>; apiKey?: string } = {}): Promise<Target> {
  const child = Bun.spawn(serveCommand(["--host", "127.0.0.1", "--port", "0", ...args]), {
    stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1", ...opts.env },
  });
  const lines: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lora-serve did not start within ${(opts.startTimeoutMs ?? 120_000) / 1000} s:\n${lines.slice(-20).join("\n")}`)), opts.startTimeoutMs ?? 120_000);
    const read = async (stream: ReadableStream<Uint8Array>) => {
      let buffered = "";
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        buffered += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          lines.push(line);
          opts.log?.(line);
          const m = /listening on (http:\/\/\S+?);/.exec(line);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        }
      }
    };
    const readers = Promise.all([read(child.stdout), read(child.stderr)]);
    // its last lines (the reason it stopped) are read before the failure is reported
    void child.exited.then(async (code) => {
      await readers;
      clearTimeout(timer);
      reject(new Error(`lora-serve exited (code ${code}) before listening:\n${lines.slice(-20).join("\n")}`));
    });
  });
  const stop = async () => {
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000); // it drains for up to its shutdown timeout
    await child.exited;
    clearTimeout(timer);
  };
  try {
    return { url, models: await listModels(url, opts.apiKey), pid: child.pid, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** An existing server; fails with a clear message (not a hang) where nothing answers. */
export async function connectUrl(url: string, apiKey?: string): Promise<Target> {
  const base = url.replace(/\/+$/, "").replace(/\/v1$/, "");
  return { url: base, models: await listModels(base, apiKey), stop: async () => {} };
}

async function listModels(url: string, apiKey?: string): Promise<Target["models"]> {
  let res: Response;
  try {
    res = await fetch(`${url}/v1/models`, { signal: AbortSignal.timeout(10_000), headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {} });
  } catch (e) {
    throw new Error(`cannot reach ${url}: ${(e as Error).name === "TimeoutError" ? "no answer within 10 s" : (e as Error).message}`);
  }
  if (!res.ok) throw new Error(`${url}/v1/models answered HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
  const body = (await res.json()) as { data?: { id: string; parent?: string | null }[] };
  if (!Array.isArray(body.data)) throw new Error(`${url}/v1/models: not an OpenAI model list`);
  return body.data.map((m) => ({ id: m.id, parent: m.parent ?? null }));
}
