// `lora-serve serve` as a deployment runs it: a subprocess with an adapters.tar.gz, answering HTTP,
// and on SIGTERM finishing the request in flight before exiting 0.
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { comparableSteps, modelDir, readReference } from "../helpers/fixtures.ts";
import { freePort, postJson as post, waitForPing } from "../helpers/server-process.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const MODEL = modelDir("tiny-llama2");
const ENV = { ...process.env, NO_COLOR: "1" };

/** adapters.tar.gz holding adapters/es and adapters/fr of the fixture model. */
function adaptersTarball(): string {
  const file = join(mkdtempSync(join(tmpdir(), "lora-serve-serve-test-")), "adapters.tar.gz");
  const tar = Bun.spawnSync(["tar", "-czf", file, "-C", MODEL, "adapters/es", "adapters/fr"]);
  if (tar.exitCode !== 0) throw new Error(tar.stderr.toString());
  return file;
}

/** Every `data:` payload of a server-sent-event stream, read to its end. */
async function readEvents(res: Response, onFirst: () => void): Promise<string[]> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buffered = "";
  const events: string[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffered += dec.decode(value, { stream: true });
    const blocks = buffered.split("\n\n");
    buffered = blocks.pop()!;
    for (const block of blocks) {
      const data = block.split("\n").find((l) => l.startsWith("data: "));
      if (data) events.push(data.slice(6));
      if (events.length === 1) onFirst();
    }
  }
  return events;
}

describe("lora-serve serve", () => {
  test("serves adapters from a tar.gz, greedy ids as in HF; SIGTERM finishes the stream in flight and exits 0", async () => {
    const ref = await readReference("tiny-llama2");
    const es = ref.cases.find((c) => c.adapter === "es")!;
    const port = freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = Bun.spawn([process.execPath, MAIN, "serve", "--model", MODEL, "--adapters", adaptersTarball(),
      "--host", "127.0.0.1", "--port", String(port), "--device", "cpu", "--shutdown-timeout", "20"],
    { env: ENV, stdout: "pipe", stderr: "pipe" });
    // consola writes info to stdout, warnings and errors to stderr
    const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then((o) => o.join(""));
    try {
      await waitForPing(url, proc);

      const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id).sort()).toEqual(["es", "fr", "tiny-llama2"]);

      const res = await post(`${url}/v1/completions`, {
        model: "es", prompt: es.prompt_ids, temperature: 0, max_tokens: 4, ignore_eos: true, return_token_ids: true,
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { choices: { token_ids: number[]; finish_reason: string }[] };
      const n = Math.min(4, comparableSteps(es.greedy_steps, 2e-4));
      expect(body.choices[0].token_ids.slice(0, n)).toEqual(es.greedy_ids.slice(0, n));
      expect(body.choices[0].finish_reason).toBe("length");

      const maxTokens = 400;
      const stream = await post(`${url}/v1/completions`, {
        model: "fr", prompt: es.prompt_ids, temperature: 0, max_tokens: maxTokens, ignore_eos: true, stream: true,
      });
      expect(stream.status).toBe(200);
      const events = await readEvents(stream, () => proc.kill("SIGTERM"));
      expect(events.at(-1)).toBe("[DONE]");
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: { finish_reason: string | null }[] });
      expect(chunks.at(-1)!.choices[0].finish_reason).toBe("length");

      const code = await Promise.race([proc.exited, Bun.sleep(25_000).then(() => "timeout")]);
      expect(code).toBe(0);
      const log = await output;
      expect(log).toContain(`listening on ${url}`);
      expect(log).toContain("SIGTERM");
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
  }, 60_000);

  test("OPTION_TENSOR_PARALLEL_DEGREE=2 is refused at start-up, with or without the serve command", () => {
    for (const args of [["serve", "--model", MODEL], ["--model", MODEL]]) {
      const p = Bun.spawnSync([process.execPath, MAIN, ...args, "--device", "cpu"], { env: { ...ENV, OPTION_TENSOR_PARALLEL_DEGREE: "2" } });
      expect(p.exitCode).toBe(1);
      expect(p.stderr.toString()).toContain('OPTION_TENSOR_PARALLEL_DEGREE: tensor parallel degree "2" is not supported: this build runs on one device');
    }
  });

  test("bad flags are refused; no arguments print the usage", () => {
    const bad = Bun.spawnSync([process.execPath, MAIN, "serve", "--max-lora", "4"], { env: ENV });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr.toString()).toContain("unknown option --max-lora");
    const usage = Bun.spawnSync([process.execPath, MAIN], { env: ENV });
    expect(usage.exitCode).toBe(0);
    expect(usage.stdout.toString() + usage.stderr.toString()).toContain("serve");
  });
});

describe("lora-serve with no command", () => {
  test("serves when LMI configuration is in the environment, as a container entrypoint; prints usage otherwise", async () => {
    const port = freePort();
    const proc = Bun.spawn([process.execPath, MAIN], { env: { ...ENV, OPTION_PORT: String(port), OPTION_DEVICE: "cpu" }, stdout: "pipe", stderr: "pipe" });
    try {
      await waitForPing(`http://127.0.0.1:${port}`, proc);
      const r = await post(`http://127.0.0.1:${port}/v1/completions`, { model: "es", prompt: "Hello", max_tokens: 2 });
      expect(r.status).toBe(200);
    } finally {
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }
    const bare = Object.fromEntries(Object.entries(ENV).filter(([k]) => !/^(OPTION|SAGEMAKER)_/.test(k)));
    const usage = Bun.spawnSync([process.execPath, MAIN], { env: bare, cwd: mkdtempSync(join(tmpdir(), "lora-serve-no-config-")) });
    expect(usage.exitCode).toBe(0);
    expect(usage.stdout.toString() + usage.stderr.toString()).toContain("USAGE");
  }, 60_000);
});
