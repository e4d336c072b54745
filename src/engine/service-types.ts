// What the engine service takes and gives per request: the request, its token events, its handle.
import type { SamplingParams } from "./sampling.ts";
import type { PromptTokenLogprob } from "./sequence.ts";

export interface GenerationRequest {
  /** Names the request in the log (the HTTP request's X-Request-Id, with an index in a batch). */
  id?: string;
  promptIds: number[];
  /** Adapter name, or null for the base model. */
  adapter: string | null;
  params: SamplingParams;
  /** Generation ends when the text contains one of these; the stop string is not part of the text. */
  stop?: string[];
  /** Aborting (e.g. the client went away) frees the sequence and its KV blocks. */
  signal?: AbortSignal;
}

export interface StreamEvent {
  token: { id: number; logprob: number; topLogprobs: { id: number; logprob: number }[] };
  /** Text this token adds (possibly "", held back at a split character or a possible stop string). */
  text: string;
  /** Set on the last event of a stream. */
  finishReason: "stop" | "length" | null;
  /** On the last event, as vLLM's stop_reason: the stop string matched (null: EOS or length). */
  stopReason?: string | number | null;
  /** On the first event: prompt tokens whose K/V came from the prefix cache. */
  cachedTokens?: number;
  /** On the first event, where asked: each prompt token's log-probability (null for the first). */
  promptLogprobs?: (PromptTokenLogprob | null)[];
}

export interface GenerationHandle {
  /** Token events in order; throws (before any event) if the adapter fails to load, or ServiceError on abort/shutdown. */
  events: AsyncIterable<StreamEvent>;
  promptTokens: number;
  cancel(): void;
}
