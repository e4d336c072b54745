// Under systemd (Type=notify): READY=1 only once the port answers, WATCHDOG=1 at half the interval
// $WATCHDOG_USEC asks for, STOPPING=1 on SIGTERM; the socket here stands in for systemd's.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { sdNotify, sockaddrUn } from "../../src/server/systemd-notify.ts";
import { NotifySocket } from "../helpers/notify-socket.ts";
import { freePort } from "../helpers/server-process.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const tmp = mkdtempSync(join(tmpdir(), "lora-serve-notify-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test("sockaddr_un: a path NUL-terminated, an @abstract name with a leading NUL", () => {
  expect([...sockaddrUn("/run/x")]).toEqual([1, 0, ...Buffer.from("/run/x"), 0]);
  expect([...sockaddrUn("@x")]).toEqual([1, 0, 0, ...Buffer.from("x")]);
  expect(() => sockaddrUn("/" + "a".repeat(120))).toThrow("too long");
});

test("without NOTIFY_SOCKET nothing is sent", () => {
  expect(sdNotify("READY=1", {})).toBe(false);
});

test("READY=1 after the port is bound, WATCHDOG=1 while serving, STOPPING=1 on SIGTERM", async () => {
  const socket = new NotifySocket(join(tmp, "notify"));
  const port = freePort();
  const proc = Bun.spawn([process.execPath, MAIN, "serve", "--host", "127.0.0.1", "--port", String(port), "--device", "cpu"], {
    env: { ...process.env, NO_COLOR: "1", NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: "200000" }, stdout: "ignore", stderr: "ignore",
  });
  try {
    const ready = await socket.waitFor("READY=1");
    expect(ready).toContain(`STATUS=serving 1 model on 127.0.0.1:${port}`);
    expect((await fetch(`http://127.0.0.1:${port}/ping`)).status).toBe(200); // ready means ready
    const before = socket.messages.filter((m) => m === "WATCHDOG=1").length;
    await Bun.sleep(500); // a 200 ms watchdog: a ping every 100 ms
    expect(socket.drain().filter((m) => m === "WATCHDOG=1").length - before).toBeGreaterThanOrEqual(3);
    proc.kill("SIGTERM");
    expect(await socket.waitFor("STOPPING=1")).toContain("STATUS=draining");
    expect(await proc.exited).toBe(0);
  } finally {
    proc.kill("SIGKILL");
    socket.close();
  }
}, 60_000);
