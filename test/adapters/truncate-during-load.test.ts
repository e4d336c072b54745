// An adapter file truncated while it loads (an operator copying a new version over it) gives that
// load an outcome, never a SIGBUS: adapter files are read into memory, not mapped. The load runs in
// a child process so that a crash shows as its exit signal instead of killing the test runner.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { adaptersDir, modelDir } from "../helpers/fixtures.ts";

test("truncating the weights mid-load: the process survives and the load ends cleanly", async () => {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "children", "truncate-during-load.ts"), join(adaptersDir("tiny-llama2"), "es"), modelDir("tiny-llama2")], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  expect({ code, signal: child.signalCode, err: err.slice(0, 300) }).toEqual({ code: 0, signal: null, err: "" });
  // the bytes were read before the truncation: the load finishes with what it read
  expect(out.trim()).toBe("loaded 4 modules");
}, 30_000);
