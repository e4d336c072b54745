// One runtime adapter cycle during a soak: load a copy of an adapter under a new name, stream three
// requests to it, unload it while they run (the unload drains them), and check that their answers
// equal the source adapter's solo runs and that the name is gone afterwards.
import { mismatch, referenceKey, type SoloReference } from "./soak-check.ts";
import { sendSoakRequest } from "./soak-client.ts";
import { SOAK_MAX_TOKENS, type SoakRequest } from "./soak-plan.ts";

/** The prompts a cycle sends (their solo runs under the source adapter are the references). */
export const RUNTIME_PROMPTS = [0, 1, 2];

const post = (url: string, body: unknown) => fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

/** A description of what went wrong, or null. */
export async function runtimeCycle(url: string, base: string, name: string, path: string, refs: Map<string, SoloReference>, source: string): Promise<string | null> {
  const load = await post(`${url}/v1/load_lora_adapter`, { lora_name: name, lora_path: path });
  if (load.status !== 200) return `load: HTTP ${load.status}: ${await load.text()}`;
  const reqs: SoakRequest[] = RUNTIME_PROMPTS.map((prompt) => ({ model: name, prompt, maxTokens: SOAK_MAX_TOKENS, route: "stream", abortAfter: 0 }));
  const answers = reqs.map((r) => sendSoakRequest(url, base, r));
  await Bun.sleep(1); // let the requests be accepted before the unload stops admitting them
  const unload = await post(`${url}/v1/unload_lora_adapter`, { lora_name: name, timeout: 60 });
  const outcomes = await Promise.all(answers);
  if (unload.status !== 200) return `unload: HTTP ${unload.status}: ${await unload.text()}`;
  for (const [i, o] of outcomes.entries()) {
    // a request the unload overtook is refused as for an adapter being unloaded; anything else is a failure
    if (o.error) {
      if (/being unloaded|does not exist/.test(o.error)) continue;
      return `request ${i}: ${o.error}`;
    }
    const why = mismatch(reqs[i], o, refs.get(referenceKey(source, reqs[i].prompt))!);
    if (why) return `request ${i}: ${why}`;
  }
  const after = await post(`${url}/v1/completions`, { model: name, prompt: "Hi", max_tokens: 1 });
  return after.status === 404 ? null : `after unload: HTTP ${after.status}, expected 404`;
}
