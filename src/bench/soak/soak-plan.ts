// What a soak sends: a seeded list of greedy requests over many adapters, three routes, varied
// lengths, and a share of streams the client abandons part way.
import { seededRandom } from "../serve/workload.ts";

export type SoakRoute = "stream" | "json" | "lmi";

export interface SoakRequest {
  /** An adapter name, or the base model's name. */
  model: string;
  prompt: number;
  maxTokens: number;
  route: SoakRoute;
  /** A stream the client aborts after this many tokens (0: read to the end). */
  abortAfter: number;
}

/** The longest output any request asks for: the solo reference is run at this length. */
export const SOAK_MAX_TOKENS = 24;

// Lengths from a few tokens to a few hundred (the fixture's context is 512).
export const SOAK_PROMPTS = [
  "Hello",
  "The weather today is",
  "Write a short story about a lighthouse keeper who finds a message in a bottle. ".repeat(4),
  "Summarize: " + "The committee met on Tuesday to review the budget, the hiring plan and the roadmap. ".repeat(12),
];

export interface SoakPlanOptions {
  requests: number;
  models: string[];
  seed: number;
  /** Share of streamed requests aborted by the client. */
  abortShare: number;
}

export function planSoak(o: SoakPlanOptions): SoakRequest[] {
  const random = seededRandom(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  return Array.from({ length: o.requests }, () => {
    const route = pick<SoakRoute>(["stream", "stream", "json", "lmi"]);
    // LMI answers text only: it is asked for the reference's full length and compared whole
    const maxTokens = route === "lmi" ? SOAK_MAX_TOKENS : 4 + Math.floor(random() * (SOAK_MAX_TOKENS - 3));
    const abortAfter = route === "stream" && random() < o.abortShare ? 1 + Math.floor(random() * 3) : 0;
    return { model: pick(o.models), prompt: Math.floor(random() * SOAK_PROMPTS.length), maxTokens, route, abortAfter };
  });
}
