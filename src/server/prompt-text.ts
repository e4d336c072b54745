// Prompt text to token ids, with its size checked first: a text too long to fit the context is
// refused by its byte length before any work is done on it; long texts tokenize off the event loop.
import type { EngineService } from "../engine/engine-service.ts";
import { badRequest } from "./errors.ts";

export function encodePrompt(service: EngineService, text: string, field: string, opts: { addSpecialTokens?: boolean } = {}): Promise<number[]> {
  checkPromptBytes(service, Buffer.byteLength(text), field);
  return service.tokenizerPool.encode(text, opts);
}

export function checkPromptBytes(service: EngineService, bytes: number, field: string): void {
  if (bytes > service.maxPromptBytes) {
    throw badRequest(`the ${field} is ${bytes} bytes, more than the ${service.maxPromptBytes} a ${service.maxModelLen}-token context can hold`, field);
  }
}
