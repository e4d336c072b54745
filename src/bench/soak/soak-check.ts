// Each soak answer against its solo run: the same greedy tokens, or for a stream the client
// abandoned, a prefix of them.
import type { SoakOutcome } from "./soak-client.ts";
import type { SoakRequest } from "./soak-plan.ts";

/** A request's greedy answer run alone, at the longest length any soak request asks for. */
export interface SoloReference {
  ids: number[];
  text: string;
}

export const referenceKey = (model: string, prompt: number): string => `${model}\u0000${prompt}`;

/** Why the answer differs from its solo run, or null where it matches. */
export function mismatch(r: SoakRequest, o: SoakOutcome, ref: SoloReference): string | null {
  if (r.route === "lmi") return o.text === ref.text ? null : `text ${JSON.stringify(o.text.slice(0, 80))} != solo ${JSON.stringify(ref.text.slice(0, 80))}`;
  const expected = ref.ids.slice(0, r.maxTokens);
  const got = o.ids;
  const prefixOk = got.length <= expected.length && got.every((id, i) => id === expected[i]);
  if (o.aborted) return prefixOk && got.length > 0 ? null : `aborted stream ${JSON.stringify(got)} is not a prefix of solo ${JSON.stringify(expected)}`;
  return prefixOk && got.length === expected.length ? null : `ids ${JSON.stringify(got)} != solo ${JSON.stringify(expected)}`;
}
