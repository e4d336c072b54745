// The single executable `make build` writes: alone in an empty folder, with $XDG_CACHE_HOME not
// writable, it serves the embedded demo model (its tokenizer threads, an extra entrypoint inside the
// executable, keep /ping fast while a long prompt is tokenized) and exits 0 on SIGTERM; it prints
// its version; and it installs itself as a systemd service whose unit systemd-analyze passes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { cpuLibraryStems } from "../../src/native/library-path.ts";
import { freePort, postJson, waitForPing } from "../helpers/server-process.ts";

const ROOT = resolve(import.meta.dir, "../..");
const tmp = mkdtempSync(join(tmpdir(), "lora-serve-exe-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("dist/lora-serve", () => {
  let exe: string;
  beforeAll(() => {
    // NVCC= leaves CUDA out: compiling it takes minutes where nvcc exists, and this test runs the CPU twin
    const make = Bun.spawnSync(["make", "build", "NVCC="], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if (make.exitCode !== 0) throw new Error(`make build failed: ${make.stderr.toString()}`);
    mkdirSync(join(tmp, "bin"));
    exe = join(tmp, "bin", "lora-serve"); // a copy away from the checkout: nothing found beside the sources
    cpSync(join(ROOT, "dist/lora-serve"), exe);
  }, 120_000);

  test("--version, -v and version print the package's version", () => {
    const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
    for (const flag of ["--version", "-v", "version"]) {
      const r = Bun.spawnSync([exe, flag]);
      expect({ flag, out: r.stdout.toString().trim(), code: r.exitCode }).toEqual({ flag, out: `lora-serve ${version}`, code: 0 });
    }
  });

  test("serves the embedded model from a bare directory; a long prompt tokenizes off the event loop", async () => {
    const port = freePort();
    const url = `http://127.0.0.1:${port}`;
    // a cache folder that cannot be created, even by root (a file is in the way), as a read-only home under a hardened unit
    const notADir = join(tmp, "not-a-folder");
    writeFileSync(notADir, "");
    const home = join(tmp, "home");
    const proc = Bun.spawn([exe, "serve", "--host", "127.0.0.1", "--port", String(port), "--device", "cpu",
      "--max-prompt-bytes", String(16 << 20), "--max-body-bytes", String(32 << 20), "--tokenizer-threads", "1"],
    { cwd: join(tmp, "bin"), env: { PATH: "/usr/bin:/bin", NO_COLOR: "1", XDG_CACHE_HOME: join(notADir, "cache"), HOME: home }, stdout: "pipe", stderr: "pipe" });
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
    const logged = await output;
    // the portable build of the twin this processor runs best (test/native/library-path.test.ts covers the choice)
    expect(logged).toContain(`device: cpu (${cpuLibraryStems()[0]}.so)`);
    expect(logged).not.toContain("tokenizer thread failed");
    expect(logged).toContain(`cache folder ${join(home, ".cache", "lora-serve")} (${join(notADir, "cache", "lora-serve")} not writable)`);
    expect(existsSync(join(home, ".cache", "lora-serve", "default-model-v1", "model.safetensors"))).toBe(true);
  }, 60_000);
});

describe("install-service", () => {
  const analyze = Bun.which("systemd-analyze");
  if (!analyze) console.warn("skipping the systemd unit checks: systemd-analyze is not installed (Debian package systemd)");

  test.skipIf(!analyze)("writes a unit systemd-analyze verifies, exposure at most 2.5, and a 0600 settings file", () => {
    const built = join(tmp, "bin", "lora-serve");
    const unitDir = join(tmp, "units"), envFile = join(tmp, "etc", "lora-serve.env");
    const r = Bun.spawnSync([built, "install-service", "--unit-dir", unitDir, "--env-file", envFile, "--port", "9000", "--api-key", "k1,k2", "--max-loras", "4"],
      { env: { ...process.env, NO_COLOR: "1" } });
    expect({ code: r.exitCode, warned: /\[(warn|error)\]/.test(r.stderr.toString()) }).toEqual({ code: 0, warned: false });
    const unit = readFileSync(join(unitDir, "lora-serve.service"), "utf8");
    expect(unit).toContain(`ExecStart=${built} serve`);
    expect(unit).toContain(`EnvironmentFile=-${envFile}`);
    expect(readFileSync(envFile, "utf8").split("\n").filter((l) => l.startsWith("OPTION_"))).toEqual(['OPTION_PORT="9000"', 'OPTION_MAX_LORAS="4"', 'OPTION_API_KEY="k1,k2"']);
    expect(statSync(envFile).mode & 0o777).toBe(0o600);

    const verify = Bun.spawnSync([analyze!, "verify", join(unitDir, "lora-serve.service")]);
    expect({ code: verify.exitCode, out: verify.stderr.toString() + verify.stdout.toString() }).toEqual({ code: 0, out: "" });
    const security = Bun.spawnSync([analyze!, "security", "--offline=yes", "--no-pager", join(unitDir, "lora-serve.service")]);
    const m = /Overall exposure level for lora-serve\.service: ([\d.]+) (\w+)/.exec(security.stdout.toString());
    expect(m).not.toBeNull();
    console.log(`systemd-analyze security: exposure ${m![1]} ${m![2]}`);
    expect(Number(m![1])).toBeLessThanOrEqual(2.5);
    expect(m![2]).toBe("OK");
  });
});
