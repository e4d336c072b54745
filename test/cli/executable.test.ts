// The single executable `make build` writes: it serves the embedded demo model with nothing else on
// disk, and its tokenizer threads (an extra entrypoint inside the executable) keep /ping fast while
// a long prompt is tokenized.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort, postJson, waitForPing } from "../helpers/server-process.ts";

const ROOT = resolve(import.meta.dir, "../..");
const tmp = mkdtempSync(join(tmpdir(), "lora-serve-exe-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("dist/lora-serve", () => {
  let exe: string;
  beforeAll(() => {
    const make = Bun.spawnSync(["make", "build"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if (make.exitCode !== 0) throw new Error(`make build failed: ${make.stderr.toString()}`);
    exe = join(tmp, "lora-serve"); // a copy away from the checkout: nothing found beside the sources
    cpSync(join(ROOT, "dist/lora-serve"), exe);
  }, 120_000);

  test("serves the embedded model from a bare directory; a long prompt tokenizes off the event loop", async () => {
    const port = freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = Bun.spawn([exe, "serve", "--host", "127.0.0.1", "--port", String(port), "--device", "cpu",
      "--max-prompt-bytes", String(16 << 20), "--max-body-bytes", String(32 << 20), "--tokenizer-threads", "1"],
    { cwd: tmp, env: { ...process.env, NO_COLOR: "1", XDG_CACHE_HOME: join(tmp, "cache") }, stdout: "pipe", stderr: "pipe" });
    const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then((o) => o.join(""));
    try {
      await waitForPing(url, proc);
      const ok = await postJson(`${url}/v1/completions`, { model: "es", prompt: "Hello", max_tokens: 3 });
      expect(ok.status).toBe(200);

      const long = postJson(`${url}/v1/completions`, { model: "es", prompt: "the quick brown fox ".repeat(30_000), max_tokens: 1 });
      await Bun.sleep(100);
      const t0 = performance.now();
      expect((await fetch(`${url}/ping`)).status).toBe(200);
      const pingMs = performance.now() - t0;
      const refused = await long;
      expect(refused.status).toBe(400);
      expect((await refused.json() as any).error.message).toMatch(/tokens, over the context length 512/);
      expect(pingMs).toBeLessThan(100);
    } finally {
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }
    expect(await output).not.toContain("tokenizer thread failed");
  }, 60_000);
});
