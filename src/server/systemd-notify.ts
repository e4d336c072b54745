// systemd's service notification protocol (sd_notify): "READY=1" once serving, "WATCHDOG=1" while
// the event loop turns, "STOPPING=1" on shutdown, as datagrams to the socket in $NOTIFY_SOCKET.
// Node's and Bun's sockets have no Unix datagrams, so libc's socket(2)/sendto(2) are called through
// bun:ffi. Without $NOTIFY_SOCKET (not under systemd) every call does nothing.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { log } from "../log.ts";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SUN_PATH_MAX = 108;

let libc: ReturnType<typeof openLibc> | null = null;

function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  }).symbols;
}

/** struct sockaddr_un for a path, or an abstract name written "@name". */
export function sockaddrUn(path: string): Uint8Array {
  const name = Buffer.from(path.startsWith("@") ? "\0" + path.slice(1) : path);
  if (name.length >= SUN_PATH_MAX) throw new Error(`NOTIFY_SOCKET is too long: ${path}`);
  const addr = new Uint8Array(2 + name.length + (path.startsWith("@") ? 0 : 1));
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(name, 2);
  return addr;
}

/** Sends one notification; false where there is no socket to send to or the send failed. */
export function sdNotify(state: string, env: Record<string, string | undefined> = process.env): boolean {
  const socketPath = env.NOTIFY_SOCKET;
  if (!socketPath) return false;
  try {
    libc ??= openLibc();
    const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const addr = sockaddrUn(socketPath);
    const message = Buffer.from(state);
    const sent = libc.sendto(fd, ptr(message), message.length, 0, ptr(addr), addr.length);
    libc.close(fd);
    return Number(sent) === message.length;
  } catch (e) {
    log.warn(`systemd notification failed: ${(e as Error).message}`);
    return false;
  }
}

/** WATCHDOG=1 at half the interval systemd asks for ($WATCHDOG_USEC), from the event loop; returns a stop function. */
export function startWatchdog(env: Record<string, string | undefined> = process.env): () => void {
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
  if (!env.NOTIFY_SOCKET || !Number.isFinite(usec) || usec <= 0 || !forUs) return () => {};
  const timer = setInterval(() => sdNotify("WATCHDOG=1", env), Math.max(1, usec / 2000));
  timer.unref();
  return () => clearInterval(timer);
}
