// The CLI as a user runs it: `lora-serve generate` in a subprocess, checked against the HF references.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Device, NativeError } from "../../src/native/device.ts";
import { adaptersDir, comparableSteps, modelDir, readReference } from "../helpers/fixtures.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync([process.execPath, MAIN, ...args], { env: { ...process.env, NO_COLOR: "1" } });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe("lora-serve generate", () => {
  test("--requests runs every adapter and prompt of tiny-llama2 as one batch, greedy ids as in HF", async () => {
    const ref = await readReference("tiny-llama2");
    const dir = mkdtempSync(join(tmpdir(), "lora-serve-cli-"));
    const file = join(dir, "batch.jsonl");
    writeFileSync(file, ref.cases.map((c) => JSON.stringify({
      adapter: c.adapter, prompt_ids: c.prompt_ids, max_tokens: c.greedy_ids.length, temperature: 0, ignore_eos: true, top_logprobs: 2,
    })).join("\n"));
    const out = cli(["generate", "--model", modelDir("tiny-llama2"), "--adapters", adaptersDir("tiny-llama2"), "--requests", file, "--json"]);
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    const lines = out.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.length).toBe(ref.cases.length);
    lines.forEach((r, i) => {
      const c = ref.cases[i];
      expect(Object.keys(r)).toEqual(["adapter", "prompt_ids", "tokens", "text", "finish_reason"]);
      expect(r.adapter).toBe(c.adapter);
      expect(r.prompt_ids).toEqual(c.prompt_ids);
      // tiny-llama2's smallest reference margin (1e-4) sits at a late step of one case: stop before it
      const n = comparableSteps(c.greedy_steps, 2e-4);
      expect(r.tokens.slice(0, n).map((t: { id: number }) => t.id)).toEqual(c.greedy_ids.slice(0, n));
      expect(r.tokens.map((t: { text: string }) => t.text).join("")).toBe(r.text);
      expect(r.tokens[0].top_logprobs.length).toBe(2);
      expect(r.finish_reason).toBe("length");
    });
  });

  test("text prompt, chat file and the embedded default model", () => {
    const dir = mkdtempSync(join(tmpdir(), "lora-serve-cli-"));
    const chat = join(dir, "chat.json");
    writeFileSync(chat, JSON.stringify([{ role: "user", content: "Hi there!" }]));
    const viaChat = cli(["generate", "--model", modelDir("tiny-llama2"), "--chat", chat, "--temperature", "0", "--max-tokens", "3", "--json"]);
    expect(viaChat.code).toBe(0);
    // the Llama-2 chat template's rendering of this message, as in the fixtures' chat.json
    expect(JSON.parse(viaChat.stdout).prompt_ids).toEqual([1, 733, 16289, 28793, 15359, 736, 28808, 733, 28748, 16289, 28793]);
    const viaText = cli(["generate", "--prompt", "Hello world", "--adapter", "es", "--temperature", "0", "--max-tokens", "3", "--json"]);
    expect(viaText.code).toBe(0);
    const r = JSON.parse(viaText.stdout);
    expect(r.adapter).toBe("es");
    expect(r.prompt_ids).toEqual([1, 22557, 1526]); // encode.json's ids_with_special for "Hello world"
  });

  test("same seed, same sample; plain output streams the text", () => {
    const args = ["generate", "--prompt", "Once upon a time", "--temperature", "0.9", "--top-p", "0.95", "--max-tokens", "12", "--seed", "7"];
    const a = cli(args), b = cli(args), c = cli([...args.slice(0, -1), "8"]);
    expect(a.code).toBe(0);
    expect(a.stdout.length).toBeGreaterThan(1);
    expect(b.stdout).toBe(a.stdout);
    expect(c.stdout).not.toBe(a.stdout);
  });

  test("--device cuda fails at start without a GPU; --device auto falls back to the CPU twin", async () => {
    let gpu = true;
    try {
      (await Device.open("cuda")).close();
    } catch (e) {
      if (!(e instanceof NativeError)) throw e;
      gpu = false;
    }
    const args = ["generate", "--prompt", "Hello", "--temperature", "0", "--max-tokens", "2"];
    const cuda = cli([...args, "--device", "cuda"]);
    const auto = cli([...args, "--device", "auto"]);
    expect(auto.code).toBe(0);
    if (gpu) {
      expect(cuda.code).toBe(0);
      expect(auto.stderr + auto.stdout).toContain("device: cuda");
    } else {
      expect(cuda.code).toBe(1);
      expect(cuda.stderr).toMatch(/no NVIDIA driver found|no usable CUDA device|libloracuda\.so not found/);
      expect(auto.stderr + auto.stdout).toContain("device: cpu (CUDA unavailable");
    }
  });

  test("bad input ends with a clear message and exit code 1", () => {
    const cases: [string[], RegExp][] = [
      [["generate", "--prompt", "x", "--adapter", "nope"], /adapter "nope" is not known/],
      [["generate", "--prompt", "x", "--max-tokens", "ten"], /--max-tokens: expected a number/],
      [["generate", "--prompt", "x", "--prompt-ids", "1,2"], /exactly one of prompt, prompt_ids or messages/],
      [["generate", "--prompt", "x", "--temperature", "-1"], /temperature must be >= 0/],
      [["generate", "--model", "/nonexistent", "--prompt", "x"], /nonexistent.*does not exist/],
      [["generate", "--prompt", "x", "--max-tokens", "100000"], /over the context length/],
    ];
    for (const [args, message] of cases) {
      const out = cli(args);
      expect(out.code).toBe(1);
      expect(out.stderr + out.stdout).toMatch(message);
    }
  });
});

describe("lora-serve bench --scheduler", () => {
  test("runs the stubbed step loop and reports per-step times (a measurement, not a timed test)", () => {
    const out = cli(["bench", "--scheduler", "--seqs", "16", "--adapters", "4", "--steps", "5", "--json"]);
    expect(out.code).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(r).toMatchObject({ seqs: 16, adapters: 4, steps: 5, tokensPerStep: 16 });
    expect(r.medianMs).toBeGreaterThan(0);
    expect(r.p90Ms).toBeGreaterThanOrEqual(r.medianMs);
  });
});
