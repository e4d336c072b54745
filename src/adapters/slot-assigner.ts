// Which adapter sits in which device slot: reference-counted by running sequences, and the least
// recently used idle one is replaced when a new adapter needs a slot.

export class SlotAssigner {
  private readonly slotOf = new Map<string, number>();
  private readonly owner: (string | null)[];
  private readonly users: number[];
  private readonly lastUse: number[];
  private clock = 0;

  /** `isPinned`: adapters never displaced from their slot once there. */
  constructor(readonly numSlots: number, private readonly isPinned: (name: string) => boolean = () => false) {
    this.owner = new Array(numSlots).fill(null);
    this.users = new Array(numSlots).fill(0);
    this.lastUse = new Array(numSlots).fill(0);
  }

  slotOfAdapter(name: string): number | undefined {
    return this.slotOf.get(name);
  }

  /**
   * Takes a reference on `name`'s slot. Returns the slot, whether the adapter must be loaded into
   * it (it was not resident) and which idle adapter it displaced, or null when every slot is in use.
   */
  acquire(name: string): { slot: number; load: boolean; replaced: string | null } | null {
    let slot = this.slotOf.get(name);
    let load = false;
    let replaced: string | null = null;
    if (slot === undefined) {
      slot = this.pickVictim();
      if (slot === undefined) return null;
      replaced = this.owner[slot];
      if (replaced !== null) this.slotOf.delete(replaced);
      this.owner[slot] = name;
      this.slotOf.set(name, slot);
      load = true;
    }
    this.users[slot]++;
    this.lastUse[slot] = ++this.clock;
    return { slot, load, replaced };
  }

  release(name: string): void {
    const slot = this.slotOf.get(name);
    if (slot === undefined || this.users[slot] === 0) throw new Error(`adapter "${name}" released more often than acquired`);
    this.users[slot]--;
  }

  /** Forgets an idle adapter (e.g. after unload); false if it is in use. */
  evict(name: string): boolean {
    const slot = this.slotOf.get(name);
    if (slot === undefined) return true;
    if (this.users[slot] > 0) return false;
    this.slotOf.delete(name);
    this.owner[slot] = null;
    return true;
  }

  /** Slots holding an adapter. */
  get occupied(): number {
    return this.owner.filter((o) => o !== null).length;
  }

  private pickVictim(): number | undefined {
    let best: number | undefined;
    for (let s = 0; s < this.numSlots; s++) {
      if (this.owner[s] === null) return s;
      if (this.users[s] === 0 && !this.isPinned(this.owner[s]!) && (best === undefined || this.lastUse[s] < this.lastUse[best])) best = s;
    }
    return best;
  }
}
