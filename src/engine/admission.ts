// Admission, once per step: which waiting sequences join the running batch. Round-robin over the
// adapters' queues, taking heads until none fits; KV blocks (less the prefix cache's), the step's
// token budget, adapter slots, and under the fair policy room made by the adapter running the most.
import type { SlotAssigner } from "../adapters/slot-assigner.ts";
import type { BlockManager, PrefixMatch } from "./block-manager.ts";
import type { EngineAdapters, EngineEvents, StepRunner } from "./engine.ts";
import { fairShare, type SchedulingPolicy } from "./fair-share.ts";
import type { Sequence } from "./sequence.ts";
import type { WaitingQueues } from "./waiting-queues.ts";

// A slot-starved adapter may be passed over by resident ones for this many steps at most.
const MAX_SLOT_WAIT_STEPS = 16;

/** The engine's state admission reads and changes. */
export interface AdmissionContext {
  runner: StepRunner;
  blocks: BlockManager;
  slots: SlotAssigner;
  waiting: WaitingQueues;
  running: Sequence[];
  /** Steps each slot-starved waiting sequence has been passed over. */
  slotWait: Map<Sequence, number>;
  slotOfSeq: Map<Sequence, number>;
  adapters: EngineAdapters;
  policy: SchedulingPolicy;
  events: EngineEvents;
  identity(seq: Sequence): string;
  preempt(seq: Sequence): void;
  fail(seq: Sequence, error: unknown): void;
}

/** Sequences passed over this step, and whether a slot-starved one has closed the slots to others. */
interface Turn {
  passedOver: Set<Sequence>;
  slotsClosed: boolean;
}

// Round-robin over adapters' queues, taking heads until none fits. A head that lacks KV blocks or
// token budget stops admission (so large requests are not overtaken for ever); one that lacks a
// free adapter slot is passed over for at most MAX_SLOT_WAIT_STEPS steps, after which no other
// adapter may take a slot. Under the fair policy a full batch or cache first makes room (fair-share.ts).
export function admit(e: AdmissionContext): void {
  const { caps } = e.runner.opts;
  let budget = caps.maxTokens - e.running.reduce((n, s) => n + s.length - s.numComputed, 0);
  // rows of logits: one per running sequence, and every prompt position of one being scored
  let rows = caps.maxLogitRows - e.running.length;
  // sequences passed over this step; slots closed once a slot-starved one has waited too long
  const turn: Turn = { passedOver: new Set<Sequence>(), slotsClosed: false };
  // "yielded": a running sequence made room; "skip": seq's adapter has its share, another may go; "stop"
  const makeRoom = (seq: Sequence): "yielded" | "skip" | "stop" => {
    if (e.policy !== "fair") return "stop";
    const victim = fairShare(e.running, seq);
    if (victim === "over-share") return "skip";
    if (victim === "no-victim") return "stop";
    budget += victim.length - victim.numComputed;
    rows += 1;
    e.preempt(victim);
    return "yielded";
  };
  for (let admitted = true; admitted; ) {
    admitted = false;
    heads: for (const seq of e.waiting.heads()) {
      if (turn.passedOver.has(seq)) continue;
      // cached blocks of its prefix cost neither compute nor free space (unless nobody holds them)
      let cached: PrefixMatch;
      for (;;) {
        cached = e.blocks.match(seq, e.identity(seq));
        const missing = e.blocks.blocksFor(seq.length + 1) - seq.blockTable.length - cached.blocks.length;
        if (e.running.length < caps.maxSeqs && missing <= e.blocks.freeBlocks - cached.idle) break;
        const room = makeRoom(seq);
        if (room === "stop") return;
        if (room === "skip") {
          turn.passedOver.add(seq);
          continue heads;
        }
      }
      const need = seq.length - seq.numComputed - cached.blocks.length * e.blocks.blockSize;
      const needRows = 1 + (seq.needsPromptLogprobs ? seq.promptIds.length - 1 : 0);
      if (need > budget || needRows > rows) return;
      if (!takeSlot(e, seq, turn)) continue;
      e.slotWait.delete(seq);
      if (cached.blocks.length > 0 || seq.blockTable.length === 0) e.blocks.adopt(seq, cached);
      seq.cachedTokens ??= seq.numComputed;
      e.blocks.ensure(seq, seq.length);
      e.waiting.take(seq);
      e.running.push(seq);
      e.events.scheduled(seq);
      budget -= need;
      rows -= needRows;
      admitted = true;
    }
  }
}

// A device slot for seq's adapter (loading it there if needed); false (seq passed over this step,
// or failed where its adapter cannot load) otherwise.
function takeSlot(e: AdmissionContext, seq: Sequence, turn: Turn): boolean {
  if (seq.adapter === null) return true;
  const resident = e.slots.slotOfAdapter(seq.adapter) !== undefined;
  const got = turn.slotsClosed && !resident ? null : e.slots.acquire(seq.adapter);
  if (!got) {
    const waited = (e.slotWait.get(seq) ?? 0) + 1;
    e.slotWait.set(seq, waited);
    if (waited > MAX_SLOT_WAIT_STEPS) turn.slotsClosed = true;
    turn.passedOver.add(seq);
    return false;
  }
  if (got.load) {
    const t0 = performance.now();
    try {
      e.runner.lora.load(got.slot, e.adapters.get(seq.adapter));
    } catch (error) {
      // the slot holds nothing usable: give it back, and fail this request alone
      e.slots.release(seq.adapter);
      e.slots.evict(seq.adapter);
      e.fail(seq, error);
      return false;
    }
    e.events.slotLoaded(seq.adapter, got.replaced, (performance.now() - t0) / 1000);
  } else {
    e.events.slotHit(seq.adapter);
  }
  e.slotOfSeq.set(seq, got.slot);
  return true;
}
