// The device side of what a request asks of its distribution beyond temperature and truncation:
// grammar masks, logit_bias and penalties (lc_logit_rules_apply), and the per-sequence token count
// tables the penalties read. A sequence with penalties holds a count row while it runs: its prompt
// and any earlier outputs are counted when it gets one; each sampled token is then counted on the
// device from lc_sample's output, with no host round trip.
import type { Device, DevPtr, LogitRulesTables } from "../native/device.ts";
import type { MetadataStager } from "./metadata-stager.ts";

export interface RowPenalties {
  /** The sequence's count row (from LogitRules.acquireCountRow). */
  countRow: number;
  presence: number;
  frequency: number;
  repetition: number;
}

/** One logit row's rules; every field optional. */
export interface RowRules {
  /** Ascending distinct token ids and the bias added to each. */
  bias?: { ids: Int32Array; values: Float32Array };
  penalties?: RowPenalties;
  /** Allowed tokens, bit v % 32 of word v / 32 (a grammar's next-token mask). */
  allowed?: Uint32Array;
}

/** logit_bias entries one request may give (OpenAI's own limit is 300). */
export const MAX_LOGIT_BIAS = 300;

export class LogitRules {
  readonly maskWords: number;
  private readonly owned: DevPtr[] = [];
  private readonly maskRow: DevPtr;
  private readonly allowed: DevPtr;
  private readonly biasIndptr: DevPtr;
  private readonly biasIds: DevPtr;
  private readonly biasValues: DevPtr;
  private readonly countRow: DevPtr;
  private readonly presence: DevPtr;
  private readonly frequency: DevPtr;
  private readonly repetition: DevPtr;
  // [rows, vocab] i32 each, allocated when a sequence first asks for penalties
  private tables: { output: DevPtr; prompt: DevPtr; scratch: DevPtr } | null = null;
  private readonly freeRows: number[];

  constructor(private readonly device: Device, private readonly vocab: number, private readonly maxRows: number,
    private readonly maxContextLen: number) {
    this.maskWords = Math.ceil(vocab / 32);
    const a = (bytes: number) => {
      const p = device.alloc(Math.max(4, bytes));
      this.owned.push(p);
      return p;
    };
    this.maskRow = a(maxRows * 4);
    this.allowed = a(maxRows * this.maskWords * 4);
    this.biasIndptr = a((maxRows + 1) * 4);
    this.biasIds = a(maxRows * MAX_LOGIT_BIAS * 4);
    this.biasValues = a(maxRows * MAX_LOGIT_BIAS * 4);
    this.countRow = a(maxRows * 4);
    this.presence = a(maxRows * 4);
    this.frequency = a(maxRows * 4);
    this.repetition = a(maxRows * 4);
    this.freeRows = Array.from({ length: maxRows }, (_, i) => maxRows - 1 - i);
  }

  /**
   * Device bytes at most: the per-row buffers, and the two count tables a first penalised request
   * allocates (the KV budget leaves room for them, so that allocation cannot fail on a full GPU).
   */
  static deviceBytes(vocab: number, rows: number, maxContextLen: number): number {
    const words = Math.ceil(vocab / 32);
    return rows * (words * 4 + 2 * MAX_LOGIT_BIAS * 4 + 7 * 4) + 4 + 2 * rows * vocab * 4 + maxContextLen * 8;
  }

  /** Staging bytes one step's rules may need (for the runner's staging buffer). */
  static stagingBytes(vocab: number, rows: number): number {
    return rows * (Math.ceil(vocab / 32) * 4 + 2 * MAX_LOGIT_BIAS * 4 + 6 * 4) + 4 * 64;
  }

  /** A count row holding these prompt and output tokens; release it when the sequence stops running. */
  acquireCountRow(promptIds: readonly number[], outputIds: readonly number[]): number {
    const row = this.freeRows.pop();
    if (row === undefined) throw new Error(`all ${this.maxRows} penalty count rows are in use`);
    const t = (this.tables ??= this.allocTables());
    const bytes = this.vocab * 4, at = row * bytes;
    this.device.memset(t.output + at, 0, bytes);
    this.device.memset(t.prompt + at, 0, bytes);
    this.countInto(t.prompt, row, promptIds);
    this.countInto(t.output, row, outputIds);
    return row;
  }

  releaseCountRow(row: number): void {
    this.freeRows.push(row);
  }

  /** Stages the rows' rules; null when no row has any (then nothing needs applying). */
  stage(rows: readonly RowRules[], st: MetadataStager): LogitRulesTables | null {
    if (rows.length > this.maxRows) throw new Error(`${rows.length} logit rows exceed the ${this.maxRows} the rules hold`);
    const out: LogitRulesTables = {};
    const masked = rows.filter((r) => r.allowed);
    if (masked.length) {
      const words = new Uint32Array(masked.length * this.maskWords), index = new Int32Array(rows.length).fill(-1);
      let m = 0;
      rows.forEach((r, i) => {
        if (!r.allowed) return;
        words.set(r.allowed, m * this.maskWords);
        index[i] = m++;
      });
      st.put(this.maskRow, index);
      st.put(this.allowed, words);
      out.mask = { maskRow: this.maskRow, allowed: this.allowed, nMaskRows: masked.length };
    }
    if (rows.some((r) => r.bias?.ids.length)) {
      const indptr = new Int32Array(rows.length + 1);
      rows.forEach((r, i) => (indptr[i + 1] = indptr[i] + (r.bias?.ids.length ?? 0)));
      const ids = new Int32Array(indptr[rows.length]), values = new Float32Array(ids.length);
      rows.forEach((r, i) => {
        if (!r.bias) return;
        ids.set(r.bias.ids, indptr[i]);
        values.set(r.bias.values, indptr[i]);
      });
      st.put(this.biasIndptr, indptr);
      st.put(this.biasIds, ids);
      st.put(this.biasValues, values);
      out.bias = { indptr: this.biasIndptr, ids: this.biasIds, values: this.biasValues };
    }
    if (rows.some((r) => r.penalties) && this.tables) {
      st.put(this.countRow, Int32Array.from(rows, (r) => r.penalties?.countRow ?? -1));
      st.put(this.presence, Float32Array.from(rows, (r) => r.penalties?.presence ?? 0));
      st.put(this.frequency, Float32Array.from(rows, (r) => r.penalties?.frequency ?? 0));
      st.put(this.repetition, Float32Array.from(rows, (r) => r.penalties?.repetition ?? 1));
      out.penalties = {
        countRow: this.countRow, outputCounts: this.tables.output, promptCounts: this.tables.prompt, nCountRows: this.maxRows,
        presence: this.presence, frequency: this.frequency, repetition: this.repetition,
      };
    }
    return out.mask || out.bias || out.penalties ? out : null;
  }

  /** Counts each penalised row's sampled token (sampledIds: lc_sample's device output); after stage(). */
  countSampled(rules: LogitRulesTables, nRows: number, sampledIds: DevPtr): void {
    if (!rules.penalties || !this.tables) return;
    this.device.countTokens({ counts: this.tables.output, nCountRows: this.maxRows, vocab: this.vocab, rows: this.countRow, ids: sampledIds, n: nRows });
  }

  private countInto(table: DevPtr, row: number, ids: readonly number[]): void {
    for (let at = 0; at < ids.length; at += this.maxContextLen) {
      const part = ids.slice(at, at + this.maxContextLen), n = part.length, t = this.tables!;
      const both = new Int32Array(2 * n);
      both.fill(row, 0, n);
      both.set(part, n);
      this.device.upload(t.scratch, both);
      this.device.countTokens({ counts: table, nCountRows: this.maxRows, vocab: this.vocab, rows: t.scratch, ids: t.scratch + n * 4, n });
    }
  }

  private allocTables() {
    const bytes = this.maxRows * this.vocab * 4;
    const t = { output: this.device.alloc(bytes), prompt: this.device.alloc(bytes), scratch: this.device.alloc(this.maxContextLen * 8) };
    this.owned.push(t.output, t.prompt, t.scratch);
    return t;
  }

  free(): void {
    for (const p of this.owned) this.device.free(p);
    this.owned.length = 0;
  }
}
