// The soak script's checks: an answer equal to its solo run passes, any other fails, an aborted
// stream must be a prefix; and a small soak through a real server ends with no failures.
import { expect, test } from "bun:test";
import { runSoak } from "../../src/bench/soak/run-soak.ts";
import { mismatch } from "../../src/bench/soak/soak-check.ts";
import type { SoakRequest } from "../../src/bench/soak/soak-plan.ts";
import { modelDir } from "../helpers/fixtures.ts";

const ref = { ids: [5, 6, 7, 8, 9], text: "five six seven eight nine" };
const req = (over: Partial<SoakRequest>): SoakRequest => ({ model: "a", prompt: 0, maxTokens: 3, route: "json", abortAfter: 0, ...over });
const outcome = (ids: number[], over = {}) => ({ ids, text: "", aborted: false, ...over });

test("mismatch: the first max_tokens of the solo run, a prefix for aborted streams, the whole text for LMI", () => {
  expect(mismatch(req({}), outcome([5, 6, 7]), ref)).toBeNull();
  expect(mismatch(req({}), outcome([5, 6, 8]), ref)).toContain("!= solo");
  expect(mismatch(req({}), outcome([5, 6]), ref)).toContain("!= solo"); // short
  expect(mismatch(req({ maxTokens: 9 }), outcome([5, 6, 7, 8, 9]), ref)).toBeNull(); // the solo run ended at EOS
  expect(mismatch(req({ route: "stream", abortAfter: 1 }), outcome([5, 6], { aborted: true }), ref)).toBeNull();
  expect(mismatch(req({ route: "stream", abortAfter: 1 }), outcome([6], { aborted: true }), ref)).toContain("prefix");
  expect(mismatch(req({ route: "stream", abortAfter: 1 }), outcome([], { aborted: true }), ref)).toContain("prefix");
  expect(mismatch(req({ route: "lmi" }), outcome([], { text: ref.text }), ref)).toBeNull();
  expect(mismatch(req({ route: "lmi" }), outcome([], { text: "five six" }), ref)).toContain("text");
});

test("a small soak: every answer equals its solo run, the KV cache empties after each round", async () => {
  const report = await runSoak({
    modelDir: modelDir("tiny-llama2"), requests: 240, concurrency: 24, adapters: 12, maxLoras: 2, maxCpuLoras: 4,
    rounds: 2, runtimeCycles: 1, abortShare: 0.1, seed: 7, log: () => {},
  });
  expect(report.failures).toEqual([]);
  expect(report.rounds.map((r) => [r.requests, r.mismatches, r.errors, r.runtimeCycles, r.kvBlocksUsedAfter])).toEqual([[120, 0, 0, 1, 0], [120, 0, 0, 1, 0]]);
  expect(report.rounds.reduce((n, r) => n + r.aborted, 0)).toBeGreaterThan(0);
  expect(report.distinctAnswers.distinct).toBe(report.distinctAnswers.models); // the check can tell the 12 adapters apart
}, 120_000);
