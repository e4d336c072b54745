// Paged KV blocks with automatic prefix caching. A sequence owns a table of physical blocks. A full
// block is named by a hash chain over (the adapter's identity, every token up to and through it),
// so two sequences with the same adapter and the same leading tokens share its K/V, and two
// adapters never do. Blocks are reference-counted; a hashed block nobody holds stays reusable until
// its space is needed (least recently released first).
import type { Sequence } from "./sequence.ts";

/** Cached blocks a new sequence can start from. */
export interface PrefixMatch {
  blocks: number[];
  /** Of those blocks, how many nobody holds now (taking them uses up free space). */
  idle: number;
}

const NO_MATCH: PrefixMatch = { blocks: [], idle: 0 };

/** The hash of a full block: its predecessor's hash, the adapter identity and its tokens. */
export function blockHash(prev: string, identity: string, tokens: Int32Array): string {
  return new Bun.CryptoHasher("sha256").update(prev).update("\0").update(identity).update("\0").update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength)).digest("hex");
}

export class BlockManager {
  private readonly free: number[];
  /** Hashed blocks nobody holds, least recently released first (a Map keeps insertion order). */
  private readonly idle = new Map<number, string>();
  private readonly byHash = new Map<string, number>();
  private readonly hashOf: (string | undefined)[];
  private readonly refs: Int32Array;
  /** Prompt tokens looked up in the cache, and those found (vLLM's prefix_cache_queries / _hits). */
  queriedTokens = 0;
  hitTokens = 0;

  constructor(readonly numBlocks: number, readonly blockSize: number, readonly caching = true) {
    // pop() hands out low block numbers first
    this.free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
    this.hashOf = new Array(numBlocks);
    this.refs = new Int32Array(numBlocks);
  }

  /** Blocks a sequence can take: never used, or cached but held by nobody. */
  get freeBlocks(): number {
    return this.free.length + this.idle.size;
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
    if (missing > this.freeBlocks) return false;
    for (let i = 0; i < missing; i++) seq.blockTable.push(this.take());
    return true;
  }

  release(seq: Sequence): void {
    for (let i = seq.blockTable.length - 1; i >= 0; i--) {
      const b = seq.blockTable[i];
      if (--this.refs[b] > 0) continue;
      const h = this.hashOf[b];
      if (h !== undefined) this.idle.set(b, h);
      else this.free.push(b);
    }
    seq.blockTable = [];
    seq.registeredBlocks = 0;
    seq.numComputed = 0;
  }

  /**
   * The cached full blocks `seq` (holding none yet) can start from; at least its last token is left
   * to compute, for the logits it samples from. Takes nothing.
   */
  match(seq: Sequence, identity: string): PrefixMatch {
    if (!this.caching || seq.blockTable.length > 0 || seq.needsPromptLogprobs) return NO_MATCH;
    const out: PrefixMatch = { blocks: [], idle: 0 };
    for (const h of this.chain(seq, identity, Math.floor((seq.length - 1) / this.blockSize))) {
      const b = this.byHash.get(h);
      if (b === undefined) break;
      out.blocks.push(b);
      if (this.refs[b] === 0) out.idle++;
    }
    return out;
  }

  /** Starts `seq` from a match: its blocks held, its tokens counted as computed. */
  adopt(seq: Sequence, m: PrefixMatch): void {
    if (this.caching && seq.blockTable.length === 0) {
      this.queriedTokens += seq.length;
      this.hitTokens += m.blocks.length * this.blockSize;
    }
    for (const b of m.blocks) {
      if (this.refs[b]++ === 0) this.idle.delete(b);
    }
    seq.blockTable = [...m.blocks];
    seq.registeredBlocks = m.blocks.length;
    seq.numComputed = m.blocks.length * this.blockSize;
  }

  /** Names the blocks `seq` has filled since the last call, so later sequences can share them. */
  register(seq: Sequence, identity: string): void {
    if (!this.caching) return;
    const full = Math.floor(seq.numComputed / this.blockSize);
    const hashes = this.chain(seq, identity, full);
    for (let i = seq.registeredBlocks; i < full; i++) {
      const h = hashes[i], b = seq.blockTable[i];
      if (!this.byHash.has(h) && this.hashOf[b] === undefined) {
        this.byHash.set(h, b);
        this.hashOf[b] = h;
      }
    }
    seq.registeredBlocks = full;
  }

  // The names of seq's first n full blocks: hashed once per sequence (its tokens only ever grow), so
  // a request waiting several steps is not hashed again at each admission.
  private chain(seq: Sequence, identity: string, n: number): string[] {
    const c = seq.hashChain?.identity === identity ? seq.hashChain : (seq.hashChain = { identity, hashes: [] });
    for (let i = c.hashes.length; i < n; i++) {
      c.hashes.push(blockHash(c.hashes[i - 1] ?? "", identity, seq.tokenSlice(i * this.blockSize, (i + 1) * this.blockSize)));
    }
    return c.hashes.length === n ? c.hashes : c.hashes.slice(0, n);
  }

  // A never-used block first, else the least recently released cached one (its name forgotten).
  private take(): number {
    let b = this.free.pop();
    if (b === undefined) {
      const [oldest, h] = this.idle.entries().next().value as [number, string];
      this.idle.delete(oldest);
      this.byHash.delete(h);
      this.hashOf[oldest] = undefined;
      b = oldest;
    }
    this.refs[b] = 1;
    return b;
  }
}
