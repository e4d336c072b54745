// One tokenizer thread of the pool: builds the tokenizer from the JSON the pool sends, then
// answers encode requests in order. Errors go back as messages; the thread stays up.
import { TextTokenizer } from "./tokenizer.ts";
import type { WorkerReply, WorkerRequest } from "./tokenizer-pool.ts";

declare const self: Worker;

let tokenizer: TextTokenizer | null = null;

self.onmessage = (event: MessageEvent<WorkerRequest>) => {
  const m = event.data;
  if (m.kind === "init") {
    tokenizer = TextTokenizer.fromJson(m.tokenizerJson, m.config, m.source);
    return;
  }
  let reply: WorkerReply;
  try {
    const ids = Int32Array.from(tokenizer!.encode(m.text, { addSpecialTokens: m.addSpecialTokens }));
    reply = { id: m.id, ids };
    self.postMessage(reply, [ids.buffer]);
  } catch (e) {
    reply = { id: m.id, error: (e as Error).message };
    self.postMessage(reply);
  }
};
