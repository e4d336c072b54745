// The seed's SageMaker LMI environment, verbatim but for the model path and a tensor-parallel degree
// of 1: the server starts with LMI's defaults, names in one line what it cannot honour, and answers
// the seed's example request (a list of inputs with a list of adapters) in LMI's shape, each output
// equal to the same prompt and adapter asked alone.
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { modelDir } from "../helpers/fixtures.ts";
import { freePort, postJson, waitForPing } from "../helpers/server-process.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");

const SEED_ENV = {
  OPTION_MODEL_ID: modelDir("tiny-llama2"),
  OPTION_TRUST_REMOTE_CODE: "true",
  OPTION_ROLLING_BATCH: "lmi-dist",
  OPTION_MAX_ROLLING_BATCH_SIZE: "16",
  OPTION_DTYPE: "fp16",
  OPTION_ENABLE_LORA: "true",
  OPTION_GPU_MEMORY_UTILIZATION: "0.9",
  OPTION_MAX_LORA_RANK: "64",
  OPTION_MAX_CPU_LORAS: "4",
  OPTION_TENSOR_PARALLEL_DEGREE: "1",
};

test("the seed's LMI environment starts and serves its example request", async () => {
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = Bun.spawn([process.execPath, MAIN], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1", ...SEED_ENV, OPTION_PORT: String(port), OPTION_DEVICE: "cpu" }, stdout: "pipe", stderr: "pipe",
  });
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then((o) => o.join(""));
  try {
    await waitForPing(url, proc);
    const inputs = ["How is the weather", "What is the capital of France?"];
    const r = await postJson(`${url}/invocations`, { inputs, adapters: ["es", "fr"], parameters: { max_new_tokens: 12 } });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { generated_text: string }[];
    expect(body.length).toBe(2);
    for (const [i, adapter] of ["es", "fr"].entries()) {
      const alone = (await (await postJson(`${url}/invocations`, { inputs: inputs[i], adapters: adapter, parameters: { max_new_tokens: 12 } })).json()) as { generated_text: string };
      expect(body[i]).toEqual({ generated_text: alone.generated_text });
    }
  } finally {
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  }
  const logged = await output;
  expect(logged.match(/does not honour/g)?.length).toBe(1);
  expect(logged).toContain("settings this server does not honour, ignored: OPTION_TRUST_REMOTE_CODE=true");
  expect(logged).toContain("max_loras 4, max_cpu_loras 4, max_lora_rank 64"); // LMI's default max_loras, said at start
}, 60_000);

test("LoRA off with adapters beside the model: one line says how many are skipped and what serves them", async () => {
  const port = freePort();
  const proc = Bun.spawn([process.execPath, MAIN], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1", OPTION_MODEL_ID: modelDir("tiny-llama2"), OPTION_PORT: String(port), OPTION_DEVICE: "cpu" },
    stdout: "pipe", stderr: "pipe",
  });
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then((o) => o.join(""));
  try {
    await waitForPing(`http://127.0.0.1:${port}`, proc);
    const r = await postJson(`http://127.0.0.1:${port}/invocations`, { inputs: "Hi", adapters: "es" });
    expect(r.status).toBe(404);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  expect(await output).toContain(`6 adapters in ${modelDir("tiny-llama2")}/adapters not served: LoRA is off (--enable-lora / OPTION_ENABLE_LORA=true serves them)`);
}, 60_000);
