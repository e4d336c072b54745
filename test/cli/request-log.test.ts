// The log as an operator reads it (`--log-format json`): one JSON object a line; a line per request
// with its X-Request-Id (echoed on the response), model, adapter, tokens, TTFT, total and status;
// a line for a refused request; and a stats line while the server is busy.
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { freePort, waitForPing } from "../helpers/server-process.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");

test("request lines carry the client's X-Request-Id; refusals and busy periods are logged; every line is JSON", async () => {
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = Bun.spawn([process.execPath, MAIN, "serve", "--host", "127.0.0.1", "--port", String(port), "--device", "cpu", "--log-format", "json", "--log-stats-interval", "1"],
    { env: { ...process.env, NO_COLOR: "1" }, stdout: "pipe", stderr: "pipe" });
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json", ...headers }, body: JSON.stringify(body) });
  try {
    await waitForPing(url, proc);
    const tagged = await post({ model: "es", prompt: "Hello", max_tokens: 5, ignore_eos: true }, { "X-Request-Id": "client-42" });
    expect(tagged.status).toBe(200);
    expect(tagged.headers.get("x-request-id")).toBe("client-42");
    const untagged = await post({ model: "fr", prompt: "Hello", max_tokens: 300, ignore_eos: true });
    const madeUp = untagged.headers.get("x-request-id")!;
    expect(madeUp).toMatch(/^[0-9a-f-]{36}$/);
    const refused = await post({ model: "es", prompt: "Hello", max_tokens: -1 }, { "X-Request-Id": "bad one with spaces" });
    expect(refused.status).toBe(400);
    const refusedId = refused.headers.get("x-request-id")!;
    expect(refusedId).not.toBe("bad one with spaces"); // not a sane token: replaced
    await Bun.sleep(2200); // at least one stats tick after the traffic
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    const [stdout, stderr] = await output;
    expect(stdout).toBe("");
    const lines = stderr.trim().split("\n").map((l) => JSON.parse(l));
    for (const l of lines) expect(Object.keys(l).slice(0, 3)).toEqual(["time", "level", "msg"]);
    const requests = lines.filter((l) => l.msg === "request");
    expect(requests.find((l) => l.id === "client-42")).toMatchObject({ model: "tiny-llama2", adapter: "es", prompt_tokens: 2, output_tokens: 5, status: "length" });
    const long = requests.find((l) => l.id === madeUp);
    expect(long).toMatchObject({ adapter: "fr", output_tokens: 300, status: "length" });
    expect(long.ttft_ms).toBeLessThanOrEqual(long.total_ms);
    expect(lines.find((l) => l.msg === "refused" && l.id === refusedId)).toMatchObject({ status: 400, path: "/v1/completions" });
    const stats = lines.filter((l) => l.msg === "stats");
    expect(stats.length).toBeGreaterThan(0);
    expect(stats[0]).toMatchObject({ model: "tiny-llama2", adapters_disk: 2 });
    expect(stats.some((s) => s.generation_tokens_per_s > 0)).toBe(true);
  } finally {
    proc.kill("SIGKILL");
  }
}, 60_000);
