// One soak request over HTTP, on its route, with what came back: token ids (OpenAI routes), text,
// whether the client aborted it, and any failure's status and message.
import { SOAK_PROMPTS, type SoakRequest } from "./soak-plan.ts";

export interface SoakOutcome {
  ids: number[];
  text: string;
  aborted: boolean;
  /** "HTTP 404: ..." or the exception's message. */
  error?: string;
}

const post = (url: string, body: unknown, signal?: AbortSignal) =>
  fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });

export async function sendSoakRequest(url: string, base: string, r: SoakRequest): Promise<SoakOutcome> {
  const prompt = SOAK_PROMPTS[r.prompt];
  const out: SoakOutcome = { ids: [], text: "", aborted: false };
  const abort = new AbortController();
  try {
    if (r.route === "lmi") {
      const body = { inputs: prompt, parameters: { max_new_tokens: r.maxTokens }, ...(r.model === base ? {} : { adapters: r.model }) };
      const res = await post(`${url}/invocations`, body);
      if (!res.ok) return { ...out, error: `HTTP ${res.status}: ${await res.text()}` };
      out.text = ((await res.json()) as { generated_text: string }).generated_text;
      return out;
    }
    const body = { model: r.model, prompt, max_tokens: r.maxTokens, temperature: 0, return_token_ids: true, stream: r.route === "stream" };
    const res = await post(`${url}/v1/completions`, body, abort.signal);
    if (!res.ok) return { ...out, error: `HTTP ${res.status}: ${await res.text()}` };
    if (r.route === "json") {
      const choice = ((await res.json()) as { choices: { text: string; token_ids: number[] }[] }).choices[0];
      return { ...out, ids: choice.token_ids, text: choice.text };
    }
    await readStream(res, out, r.abortAfter, abort);
  } catch (e) {
    if (!out.aborted) out.error = (e as Error).message;
  }
  return out;
}

async function readStream(res: Response, out: SoakOutcome, abortAfter: number, abort: AbortController): Promise<void> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const bytes of res.body!) {
    buffered += decoder.decode(bytes, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const frame = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (frame === "data: [DONE]") return;
      const event = JSON.parse(frame.slice("data: ".length));
      if (event.error) throw new Error(`stream error: ${JSON.stringify(event.error)}`);
      for (const c of event.choices ?? []) {
        out.ids.push(...(c.token_ids ?? []));
        out.text += c.text ?? "";
      }
      if (abortAfter > 0 && out.ids.length >= abortAfter) {
        out.aborted = true;
        abort.abort();
        return;
      }
    }
  }
  throw new Error("the stream ended without [DONE]");
}
