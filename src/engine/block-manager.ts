// Paged KV block allocator: a free list of physical blocks; a sequence owns a table of them.
import type { Sequence } from "./sequence.ts";

export class BlockManager {
  private readonly freeList: number[];

  constructor(readonly numBlocks: number, readonly blockSize: number) {
    // pop() hands out low block numbers first
    this.freeList = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
  }

  get freeBlocks(): number {
    return this.freeList.length;
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /** Blocks `seq` still needs so that `tokens` of it fit. */
  missingBlocks(seq: Sequence, tokens: number): number {
    return Math.max(0, this.blocksFor(tokens) - seq.blockTable.length);
  }

  /** Grows seq's table to hold `tokens`; false (and nothing taken) if there are not enough free blocks. */
  ensure(seq: Sequence, tokens: number): boolean {
    const missing = this.missingBlocks(seq, tokens);
    if (missing > this.freeList.length) return false;
    for (let i = 0; i < missing; i++) seq.blockTable.push(this.freeList.pop()!);
    return true;
  }

  release(seq: Sequence): void {
    for (let i = seq.blockTable.length - 1; i >= 0; i--) this.freeList.push(seq.blockTable[i]);
    seq.blockTable = [];
    seq.numComputed = 0;
  }
}
