// One streamed OpenAI completion, timed as vLLM's benchmark_serving times it: time to first token
// (first content chunk), the gaps between output tokens, end-to-end latency; failures kept, never dropped.

export interface RequestResult {
  adapter: string;
  /** Seconds from the point's start to the send. */
  sentAt: number;
  ok: boolean;
  /** Status and message of a failure. */
  error?: string;
  ttft: number;
  e2e: number;
  /** Mean time per output token after the first: (e2e - ttft) / (tokens - 1). */
  tpot: number;
  promptTokens: number;
  outputTokens: number;
}

export interface CompletionRequest {
  url: string;
  model: string;
  prompt: string;
  maxTokens: number;
  ignoreEos: boolean;
  timeoutMs: number;
  apiKey?: string;
  /** Stop strings sent with the request (the host's stop matching is part of what is measured). */
  stop?: string[];
  /** Sampling (0: greedy, as vLLM's benchmark by default). */
  temperature: number;
  topP: number;
}

export async function streamCompletion(r: CompletionRequest, sentAt: number): Promise<RequestResult> {
  const t0 = performance.now();
  const result: RequestResult = { adapter: r.model, sentAt, ok: false, ttft: 0, e2e: 0, tpot: 0, promptTokens: 0, outputTokens: 0 };
  let chunks = 0, firstAt = 0;
  try {
    const res = await fetch(`${r.url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(r.apiKey ? { Authorization: `Bearer ${r.apiKey}` } : {}) },
      body: JSON.stringify({
        model: r.model, prompt: r.prompt, max_tokens: r.maxTokens, temperature: r.temperature, top_p: r.topP, stream: true,
        stream_options: { include_usage: true }, ...(r.ignoreEos ? { ignore_eos: true } : {}), ...(r.stop?.length ? { stop: r.stop } : {}),
      }),
      signal: AbortSignal.timeout(r.timeoutMs),
    });
    if (!res.ok || !res.body) {
      result.error = `HTTP ${res.status}: ${errorMessage(await res.text())}`;
      return result;
    }
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const bytes of res.body) {
      buffered += decoder.decode(bytes, { stream: true });
      let end: number;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const frame = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (!frame.startsWith("data: ") || frame === "data: [DONE]") continue;
        const event = JSON.parse(frame.slice(6));
        if (event.error) throw new Error(`stream error: ${errorMessage(JSON.stringify(event))}`);
        if (event.usage) {
          result.promptTokens = event.usage.prompt_tokens ?? 0;
          result.outputTokens = event.usage.completion_tokens ?? 0;
        }
        if (event.choices?.length > 0) {
          if (chunks++ === 0) firstAt = performance.now();
        }
      }
    }
    const end = performance.now();
    if (chunks === 0) throw new Error("the stream ended without a token");
    if (result.outputTokens === 0) result.outputTokens = chunks; // a target without stream usage: a chunk a token
    result.ttft = (firstAt - t0) / 1000;
    result.e2e = (end - t0) / 1000;
    result.tpot = result.outputTokens > 1 ? (result.e2e - result.ttft) / (result.outputTokens - 1) : 0;
    result.ok = true;
  } catch (e) {
    const err = e as Error;
    result.error = err.name === "TimeoutError" ? `timed out after ${r.timeoutMs / 1000} s` : err.message;
    result.e2e = (performance.now() - t0) / 1000;
  }
  return result;
}

function errorMessage(body: string): string {
  try {
    const v = JSON.parse(body);
    const m = v?.error?.message ?? v?.error ?? v?.message;
    if (typeof m === "string") return m;
  } catch {}
  return body.slice(0, 200);
}
