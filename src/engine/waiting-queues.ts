// Waiting sequences, one FIFO queue per adapter, served round-robin so that a busy adapter's
// backlog cannot hold a quiet adapter's request behind it.
import type { Sequence } from "./sequence.ts";

const BASE = "\u0000base";

export class WaitingQueues {
  private readonly queues = new Map<string, Sequence[]>();
  /** Adapter keys in turn order; the head has the next turn. */
  private readonly turn: string[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(seq: Sequence): void {
    this.queueOf(seq).push(seq);
    this.count++;
  }

  /** A preempted sequence goes back to the front of its queue. */
  pushFront(seq: Sequence): void {
    this.queueOf(seq).unshift(seq);
    this.count++;
  }

  remove(seq: Sequence): boolean {
    const q = this.queues.get(keyOf(seq));
    const i = q ? q.indexOf(seq) : -1;
    if (i < 0) return false;
    q!.splice(i, 1);
    this.count--;
    this.dropIfEmpty(keyOf(seq));
    return true;
  }

  /** The head of each queue, in turn order. */
  heads(): Sequence[] {
    return this.turn.map((key) => this.queues.get(key)![0]);
  }

  /** Takes `seq` (a head) out and moves its adapter to the back of the turn order. */
  take(seq: Sequence): void {
    const key = keyOf(seq);
    this.queues.get(key)!.shift();
    this.count--;
    this.turn.splice(this.turn.indexOf(key), 1);
    if (this.queues.get(key)!.length > 0) this.turn.push(key);
    else this.queues.delete(key);
  }

  all(): Sequence[] {
    return [...this.queues.values()].flat();
  }

  private queueOf(seq: Sequence): Sequence[] {
    const key = keyOf(seq);
    let q = this.queues.get(key);
    if (!q) {
      this.queues.set(key, (q = []));
      this.turn.push(key);
    }
    return q;
  }

  private dropIfEmpty(key: string): void {
    if (this.queues.get(key)!.length > 0) return;
    this.queues.delete(key);
    this.turn.splice(this.turn.indexOf(key), 1);
  }
}

function keyOf(seq: Sequence): string {
  return seq.adapter ?? BASE;
}
