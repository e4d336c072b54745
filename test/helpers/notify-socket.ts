// A Unix datagram socket that receives sd_notify messages, as systemd's NOTIFY_SOCKET does (through
// libc by bun:ffi, since Bun has no Unix datagram sockets).
import { dlopen, FFIType, ptr } from "bun:ffi";
import { sockaddrUn } from "../../src/server/systemd-notify.ts";

const AF_UNIX = 1, SOCK_DGRAM = 2, SOCK_NONBLOCK = 0o4000;

const libc = dlopen("libc.so.6", {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
}).symbols;

export class NotifySocket {
  private readonly fd: number;
  readonly messages: string[] = [];

  constructor(readonly path: string) {
    this.fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    const addr = sockaddrUn(path);
    if (this.fd < 0 || libc.bind(this.fd, ptr(addr), addr.length) !== 0) throw new Error(`cannot bind a datagram socket at ${path}`);
  }

  /** Reads every datagram waiting. */
  drain(): string[] {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = Number(libc.recv(this.fd, ptr(buf), buf.length, 0));
      if (n <= 0) return this.messages;
      this.messages.push(new TextDecoder().decode(buf.subarray(0, n)));
    }
  }

  /** Waits for a message containing `text` (polling every 10 ms). */
  async waitFor(text: string, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.drain().find((m) => m.includes(text));
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(text)} notification within ${timeoutMs} ms (got ${JSON.stringify(this.messages)})`);
      await Bun.sleep(10);
    }
  }

  close(): void {
    libc.close(this.fd);
  }
}
