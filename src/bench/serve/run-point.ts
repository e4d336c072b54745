// One point of a serving benchmark: send the workload to the target (open loop at a rate, or a
// closed loop of C clients), wait for every answer, and summarise what each request saw.
import { streamCompletion, type RequestResult } from "./client.ts";
import { jainIndex, spread, type Spread } from "./stats.ts";
import { prefixDelta, scrapePrefixCache, scrapeTiers, tierDelta, type PrefixCacheFigures, type TierCounters } from "./target-metrics.ts";
import { arrivalTimes, popularity, promptSource, seededRandom } from "./workload.ts";

export interface PointSettings {
  url: string;
  /** The adapters requests may name, most popular first. */
  adapters: string[];
  numPrompts: number;
  /** Requests per second (open loop; Infinity: all at once) ... */
  rate?: number;
  /** ... or this many clients, each sending its next request when the last one ends. */
  concurrency?: number;
  burstiness: number;
  zipf: number;
  inputLen: string;
  outputLen: string;
  /** Words of a system prompt every request starts with (0: none). */
  sharedPrefix: number;
  promptFile?: string;
  ignoreEos: boolean;
  sloTtft: number;
  seed: number;
  timeoutMs: number;
  apiKey?: string;
  stop?: string[];
  temperature: number;
  topP: number;
}

export interface Progress {
  sent: number;
  done: number;
  errors: number;
  elapsed: number;
}

export interface PointResult {
  /** The swept variable's value for this point. */
  adapters: number;
  rate: number | null;
  concurrency: number | null;
  requests: number;
  completed: number;
  errors: number;
  /** Each distinct failure message with its count. */
  errorMessages: Record<string, number>;
  durationS: number;
  requestsPerS: number;
  outputTokensPerS: number;
  totalTokensPerS: number;
  ttft: Spread;
  tpot: Spread;
  e2e: Spread;
  /** Share of requests (failures count as misses) whose time to first token was within sloTtft. */
  sloAttainment: number;
  sloTtft: number;
  /** Jain's index over adapters of the mean decode rate (output tokens / s) their requests got. */
  fairness: number;
  adaptersUsed: number;
  /** From the target's /metrics over this point (null: not a lora-serve). */
  tiers: Record<string, TierCounters> | null;
  /** Prompt tokens the prefix cache supplied over this point (null: the target exports no vLLM prefix-cache counters). */
  prefixCache: PrefixCacheFigures | null;
  /** Every time to first token (seconds) of the completed requests, sorted: the CDF. */
  ttftSamples: number[];
}

export async function runPoint(s: PointSettings, onProgress: (p: Progress) => void = () => {}): Promise<PointResult> {
  const random = seededRandom(s.seed);
  const pick = popularity(s.adapters.length, s.zipf, random);
  const nextPrompt = promptSource({ inputLen: s.inputLen, outputLen: s.outputLen, file: s.promptFile, sharedPrefix: s.sharedPrefix }, random);
  const plan = Array.from({ length: s.numPrompts }, () => ({ adapter: s.adapters[pick()], ...nextPrompt() }));
  const before = await scrapeTiers(s.url);
  const prefixBefore = await scrapePrefixCache(s.url);
  const progress: Progress = { sent: 0, done: 0, errors: 0, elapsed: 0 };
  const start = performance.now();
  const send = async (i: number): Promise<RequestResult> => {
    progress.sent++;
    const p = plan[i];
    const r = await streamCompletion({ url: s.url, model: p.adapter, prompt: p.prompt, maxTokens: p.maxTokens, ignoreEos: s.ignoreEos, timeoutMs: s.timeoutMs, apiKey: s.apiKey, stop: s.stop, temperature: s.temperature, topP: s.topP }, (performance.now() - start) / 1000);
    progress.done++;
    if (!r.ok) progress.errors++;
    return r;
  };
  const ticker = setInterval(() => onProgress({ ...progress, elapsed: (performance.now() - start) / 1000 }), 250);
  let results: RequestResult[];
  try {
    results = s.concurrency !== undefined ? await closedLoop(s.concurrency, s.numPrompts, send) : await openLoop(arrivalTimes(s.numPrompts, s.rate ?? Infinity, s.burstiness, random), start, send);
  } finally {
    clearInterval(ticker);
  }
  const durationS = (performance.now() - start) / 1000;
  onProgress({ ...progress, elapsed: durationS });
  const prefixCache = prefixDelta(prefixBefore, await scrapePrefixCache(s.url), durationS);
  return { ...summarise(s, results, durationS, tierDelta(before, await scrapeTiers(s.url))), prefixCache };
}

async function openLoop(times: number[], start: number, send: (i: number) => Promise<RequestResult>): Promise<RequestResult[]> {
  const pending: Promise<RequestResult>[] = [];
  for (let i = 0; i < times.length; i++) {
    const wait = start + times[i] * 1000 - performance.now();
    if (wait > 1) await Bun.sleep(wait);
    pending.push(send(i));
  }
  return Promise.all(pending);
}

async function closedLoop(clients: number, n: number, send: (i: number) => Promise<RequestResult>): Promise<RequestResult[]> {
  const results: RequestResult[] = [];
  let next = 0;
  const client = async () => {
    while (next < n) results.push(await send(next++));
  };
  await Promise.all(Array.from({ length: Math.min(clients, n) }, client));
  return results;
}

function summarise(s: PointSettings, results: RequestResult[], durationS: number, tiers: PointResult["tiers"]): PointResult {
  const ok = results.filter((r) => r.ok);
  const errorMessages: Record<string, number> = {};
  for (const r of results) if (!r.ok) errorMessages[r.error!] = (errorMessages[r.error!] ?? 0) + 1;
  const outputTokens = ok.reduce((n, r) => n + r.outputTokens, 0);
  const promptTokens = ok.reduce((n, r) => n + r.promptTokens, 0);
  // fairness: each adapter's requests should decode as fast as any other's, whatever its popularity
  const rates = new Map<string, number[]>();
  for (const r of ok) if (r.e2e > 0) (rates.get(r.adapter) ?? rates.set(r.adapter, []).get(r.adapter)!).push(r.outputTokens / r.e2e);
  const meanRates = [...rates.values()].map((xs) => xs.reduce((a, b) => a + b, 0) / xs.length);
  return {
    adapters: s.adapters.length, rate: s.concurrency === undefined ? (s.rate ?? Infinity) : null, concurrency: s.concurrency ?? null,
    requests: results.length, completed: ok.length, errors: results.length - ok.length, errorMessages,
    durationS, requestsPerS: ok.length / durationS, outputTokensPerS: outputTokens / durationS, totalTokensPerS: (outputTokens + promptTokens) / durationS,
    ttft: spread(ok.map((r) => r.ttft)), tpot: spread(ok.filter((r) => r.outputTokens > 1).map((r) => r.tpot)), e2e: spread(ok.map((r) => r.e2e)),
    sloAttainment: results.length === 0 ? NaN : ok.filter((r) => r.ttft <= s.sloTtft).length / results.length, sloTtft: s.sloTtft,
    fairness: jainIndex(meanRates), adaptersUsed: rates.size, tiers, prefixCache: null,
    ttftSamples: ok.map((r) => r.ttft).sort((a, b) => a - b),
  };
}
