// Why the engine service refused or ended a request; the server maps each to a status code.

/** The server may not take this request now (503 with Retry-After). */
export class OverloadedError extends Error {
  override name = "OverloadedError";
  constructor(message: string, readonly retryAfterSeconds: number) {
    super(message);
  }
}

/** The adapter has requests in flight (or is pinned); it cannot be unloaded now. */
export class AdapterBusyError extends Error {
  override name = "AdapterBusyError";
}

/** The request ended without finishing: cancelled, or the server is going away. */
export class CancelledError extends Error {
  override name = "CancelledError";
}

/** Pinning this adapter would leave unpinned adapters no device slot. */
export class PinLimitError extends Error {
  override name = "PinLimitError";
}
