// What a serving benchmark sends: which adapter each request names (uniform or power-law
// popularity), when it is sent (Poisson or gamma arrivals, or a closed loop), and its prompt and
// output lengths (fixed, a range, or a JSONL file of real prompts). Seeded, so a run repeats.
import { readFileSync } from "node:fs";

/** A seeded uniform source in [0, 1) (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Picks index i of n with probability ∝ 1 / (i + 1)^alpha (alpha 0: uniform), as S-LoRA's power law. */
export function popularity(n: number, alpha: number, random: () => number): () => number {
  if (n < 1) throw new Error("popularity over no adapters");
  const cdf = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) cdf[i] = total += 1 / (i + 1) ** alpha;
  return () => {
    const x = random() * total;
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
}

/** Standard gamma variate (Marsaglia and Tsang), shape k > 0, scale 1. */
function gamma(k: number, random: () => number): number {
  if (k < 1) return gamma(k + 1, random) * random() ** (1 / k);
  const d = k - 1 / 3, c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number, v: number;
    do {
      // Box-Muller normal
      x = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - random();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

/**
 * Send times (seconds from the start) of `n` requests at `rate` per second: gaps drawn from a gamma
 * distribution of shape `burstiness` and mean 1 / rate (burstiness 1: Poisson; below 1 burstier), as
 * vLLM's benchmark_serving. rate Infinity sends everything at once.
 */
export function arrivalTimes(n: number, rate: number, burstiness: number, random: () => number): number[] {
  if (!(rate > 0)) throw new Error("the rate must be positive");
  if (!(burstiness > 0)) throw new Error("burstiness must be positive");
  const times: number[] = [];
  let t = 0;
  for (let i = 0; i < n; i++) {
    times.push(t);
    if (Number.isFinite(rate)) t += gamma(burstiness, random) / (burstiness * rate);
  }
  return times;
}

/** A length: "128" (fixed) or "64-256" (uniform over the range, both ends included). */
export function lengthSampler(spec: string, what: string): (random: () => number) => number {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(spec);
  if (!m) throw new Error(`${what}: expected N or MIN-MAX, got ${JSON.stringify(spec)}`);
  const lo = Number(m[1]), hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || hi < lo) throw new Error(`${what}: expected 1 <= MIN <= MAX, got ${JSON.stringify(spec)}`);
  return (random) => lo + Math.floor(random() * (hi - lo + 1));
}

export interface PromptSpec {
  /** Prompt text. */
  prompt: string;
  /** Output tokens asked for (max_tokens). */
  maxTokens: number;
}

// Common English words, one token each in Llama-family vocabularies: a prompt of N words is about N tokens.
const WORDS = ("the of and to in is was for on that with as by at from his her an which it be are this had not " +
  "but they were have one all their more when there also been has first new other after time two into most " +
  "city year world people state school music water river house story part work small early north south").split(" ");

/**
 * Prompts of about `inputLen` words with `outputLen` output tokens, or lines of a JSONL file; each
 * behind the same `sharedPrefix` words where asked (a chat workload's system prompt).
 */
export function promptSource(o: { inputLen: string; outputLen: string; file?: string; sharedPrefix?: number }, random: () => number): () => PromptSpec {
  const inner = promptsAlone(o, random);
  if (!o.sharedPrefix) return inner;
  const fixed = seededRandom(0x5eed);
  const prefix = Array.from({ length: o.sharedPrefix }, () => WORDS[Math.floor(fixed() * WORDS.length)]).join(" ");
  return () => {
    const p = inner();
    return { ...p, prompt: `${prefix}\n\n${p.prompt}` };
  };
}

function promptsAlone(o: { inputLen: string; outputLen: string; file?: string }, random: () => number): () => PromptSpec {
  const output = lengthSampler(o.outputLen, "--output-len");
  if (o.file) {
    const prompts = readPromptFile(o.file);
    return () => {
      const p = prompts[Math.floor(random() * prompts.length)];
      return { prompt: p.prompt, maxTokens: p.maxTokens ?? output(random) };
    };
  }
  const input = lengthSampler(o.inputLen, "--input-len");
  return () => {
    const n = input(random);
    const words = Array.from({ length: n }, () => WORDS[Math.floor(random() * WORDS.length)]);
    return { prompt: words.join(" "), maxTokens: output(random) };
  };
}

/** JSONL, one request a line: {"prompt": "...", "max_tokens"?: N} (or "output_len"). */
function readPromptFile(path: string): { prompt: string; maxTokens?: number }[] {
  const out: { prompt: string; maxTokens?: number }[] = [];
  readFileSync(path, "utf8").split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let v: any;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new Error(`${path} line ${i + 1}: ${(e as Error).message}`);
    }
    if (typeof v?.prompt !== "string") throw new Error(`${path} line ${i + 1}: expected {"prompt": "..."}`);
    const n = v.max_tokens ?? v.output_len;
    if (n !== undefined && !(Number.isInteger(n) && n >= 1)) throw new Error(`${path} line ${i + 1}: max_tokens must be a positive integer`);
    out.push({ prompt: v.prompt, maxTokens: n });
  });
  if (out.length === 0) throw new Error(`${path}: no prompts`);
  return out;
}
