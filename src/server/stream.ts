// Streaming response bodies: server-sent events (OpenAI) and JSON lines (LMI), written by an
// async pump; a client that goes away cancels the pump's requests.
import { classify, errorBody, type ErrorFormat } from "./errors.ts";

export interface StreamOptions {
  format: ErrorFormat;
  sse: boolean;
  /** Writes the body; `send` takes one JSON value (one event / one line). */
  pump: (send: (value: unknown) => void) => Promise<void>;
  /** Cancels whatever the pump is waiting on (client disconnected). */
  cancel: () => void;
  log: (msg: string) => void;
}

export function streamResponse(opts: StreamOptions): Response {
  const encoder = new TextEncoder();
  let closed = false;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (s: string) => {
        if (!closed) controller.enqueue(encoder.encode(s));
      };
      const send = (value: unknown) => write(opts.sse ? `data: ${JSON.stringify(value)}\n\n` : `${JSON.stringify(value)}\n`);
      void (async () => {
        try {
          await opts.pump(send);
        } catch (e) {
          // headers are out: the error travels in the stream, in the route's error shape
          opts.cancel();
          const c = classify(e);
          if (c.unexpected) opts.log(`stream failed: ${(e as Error)?.stack ?? e}`);
          if (!closed) send(errorBody(c, opts.format));
        }
        if (opts.sse) write("data: [DONE]\n\n");
        if (!closed) {
          closed = true;
          controller.close();
        }
      })();
    },
    cancel() {
      closed = true;
      opts.cancel();
    },
  });
  const contentType = opts.sse ? "text/event-stream; charset=utf-8" : "application/jsonlines";
  return new Response(body, { headers: { "Content-Type": contentType, "Cache-Control": "no-cache", "X-Accel-Buffering": "no" } });
}
