// Thin faces over prom-client's counter and histogram: a label set's series bound once (for
// updates on every token), and a value read back by labels (for tests and the benchmark).
import { Counter, Histogram, type Registry } from "prom-client";

export type Labels = Record<string, string>;

const sameLabels = (a: Record<string, unknown>, b: Labels): boolean =>
  Object.keys(b).every((k) => String(a[k]) === b[k]) && Object.keys(a).length === Object.keys(b).length;

export class CounterMetric {
  private readonly c: Counter<string>;
  constructor(registry: Registry, name: string, help: string, labelNames: string[]) {
    this.c = new Counter({ name, help, labelNames, registers: [registry] });
  }
  inc(labels: Labels = {}, by = 1): void {
    this.c.inc(labels, by);
  }
  /** One label set's series, its key computed once. */
  series(labels: Labels): { inc(by?: number): void } {
    const child = this.c.labels(labels);
    return { inc: (by = 1) => child.inc(by) };
  }
  async get(labels: Labels = {}): Promise<number> {
    return (await this.c.get()).values.find((v) => sameLabels(v.labels, labels))?.value ?? 0;
  }
}

export class HistogramMetric {
  private readonly h: Histogram<string>;
  constructor(registry: Registry, name: string, help: string, labelNames: string[], buckets: number[]) {
    this.h = new Histogram({ name, help, labelNames, buckets, registers: [registry] });
  }
  observe(value: number, labels: Labels = {}): void {
    this.h.observe(labels, value);
  }
  series(labels: Labels): { observe(value: number): void } {
    const child = this.h.labels(labels);
    return { observe: (value) => child.observe(value) };
  }
  /** Observations recorded under these labels. */
  async count(labels: Labels = {}): Promise<number> {
    return (await this.h.get()).values.find((v) => v.metricName?.endsWith("_count") && sameLabels(v.labels, labels))?.value ?? 0;
  }
}
