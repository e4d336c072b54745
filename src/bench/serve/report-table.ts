// The terminal table of a serving sweep: one row a point.
import type { SweepReport } from "./sweep.ts";

const ms = (s: number) => (Number.isFinite(s) ? (s * 1000).toFixed(s < 0.1 ? 1 : 0) : "-");

export function formatTable(r: SweepReport): string {
  const head = ["adapters", "rate", "conc", "done", "errors", "req/s", "out tok/s", "TTFT p50/p90/p99 ms", "TPOT p50/p99 ms", "E2E p50/p99 ms", "SLO", "fair", "gpu hit", "cpu hit", "prefix hit", "saved tok/s"];
  const rows = r.points.map((p) => [
    String(p.adapters), p.rate === null ? "-" : String(p.rate), p.concurrency === null ? "-" : String(p.concurrency),
    `${p.completed}/${p.requests}`, String(p.errors), p.requestsPerS.toFixed(2), p.outputTokensPerS.toFixed(0),
    `${ms(p.ttft.p50)}/${ms(p.ttft.p90)}/${ms(p.ttft.p99)}`, `${ms(p.tpot.p50)}/${ms(p.tpot.p99)}`, `${ms(p.e2e.p50)}/${ms(p.e2e.p99)}`,
    Number.isFinite(p.sloAttainment) ? `${(p.sloAttainment * 100).toFixed(0)}%` : "-", Number.isFinite(p.fairness) ? p.fairness.toFixed(3) : "-",
    hit(p.tiers?.gpu?.hitRate), hit(p.tiers?.cpu?.hitRate), hit(p.prefixCache?.hitRate), p.prefixCache ? p.prefixCache.savedTokensPerS.toFixed(0) : "-",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join("  ");
  const out = [`bench serve: ${r.target} (swept: ${r.swept}; SLO: TTFT <= ${ms(r.points[0]?.sloTtft ?? NaN)} ms)`, line(head), ...rows.map(line)];
  for (const p of r.points) {
    for (const [message, n] of Object.entries(p.errorMessages)) out.push(`  ${n} x ${message}`);
  }
  return out.join("\n");
}

function hit(rate: number | undefined): string {
  return rate === undefined || !Number.isFinite(rate) ? "-" : `${(rate * 100).toFixed(0)}%`;
}
