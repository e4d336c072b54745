// The fair scheduling policy's one decision: when a request for one adapter cannot start because
// the running batch (or the KV cache) is full, the adapter holding the most running sequences gives
// up its youngest, as long as that leaves it more than the waiting adapter will have. A quiet
// tenant then starts at the next step instead of after a flooding tenant's sequences finish, and two
// busy tenants settle at equal shares without preempting back and forth.
import type { Sequence } from "./sequence.ts";

export type SchedulingPolicy = "fair" | "fcfs";

/**
 * For a waiting sequence that cannot start: the running sequence to preempt for it; "over-share"
 * where its adapter already runs as many sequences as any other (it waits, and others may go
 * first); "no-victim" where no adapter holds more than one sequence over its share (it waits).
 */
export function fairShare(running: readonly Sequence[], waiting: Sequence): Sequence | "over-share" | "no-victim" {
  const counts = new Map<string | null, number>();
  for (const s of running) counts.set(s.adapter, (counts.get(s.adapter) ?? 0) + 1);
  const mine = counts.get(waiting.adapter) ?? 0;
  let top: string | null = null, most = 0;
  for (const [adapter, n] of counts) if (n > most) [top, most] = [adapter, n];
  if (mine >= most) return "over-share";
  if (most <= mine + 1) return "no-victim";
  for (let i = running.length - 1; i >= 0; i--) if (running[i].adapter === top) return running[i]; // the last admitted
  return "no-victim";
}
