// One self-contained HTML page for a serving sweep: uPlot (inlined, so the page reads offline) draws
// throughput and p99 TTFT against the swept variable and a TTFT CDF per point; a table below.
import { writeFileSync } from "node:fs";
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import { formatTable } from "./report-table.ts";
import type { SweepReport } from "./sweep.ts";

const CDF_STEPS = 200;

/** The charts' data, computed here so the page's script only draws. */
export function chartData(r: SweepReport) {
  const x = (p: SweepReport["points"][number]) => (r.swept === "adapters" ? p.adapters : r.swept === "rate" ? p.rate : p.concurrency) ?? NaN;
  const points = [...r.points].filter((p) => Number.isFinite(x(p))).sort((a, b) => x(a) - x(b));
  const all = r.points.flatMap((p) => p.ttftSamples);
  const top = all.length > 0 ? Math.max(...all) : 1;
  const grid = Array.from({ length: CDF_STEPS + 1 }, (_, i) => (top * i) / CDF_STEPS);
  const cdf = r.points.map((p) => {
    const s = p.ttftSamples;
    let k = 0;
    return grid.map((t) => {
      while (k < s.length && s[k] <= t) k++;
      return p.requests > 0 ? k / p.requests : 0;
    });
  });
  return {
    swept: r.swept,
    sweep: [points.map(x), points.map((p) => p.outputTokensPerS), points.map((p) => p.ttft.p99 * 1000)],
    cdf: [grid.map((t) => t * 1000), ...cdf],
    cdfLabels: r.points.map((p) => `${p.adapters} adapters, ${p.rate !== null ? `rate ${p.rate}` : `concurrency ${p.concurrency}`}`),
  };
}

const PAGE_SCRIPT = `
const d = JSON.parse(document.getElementById("data").textContent);
const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
const width = Math.min(900, document.body.clientWidth - 40);
const sweepLabel = { adapters: "adapters", rate: "request rate (req/s)", concurrency: "concurrent clients" }[d.swept];
// adapter counts span decades (5 to 2,000): a log axis keeps the small ones apart
const sweepScale = d.swept === "adapters" && d.sweep[0].every((x) => x > 0) ? { time: false, distr: 3, log: 10 } : { time: false };
function chart(id, title, xLabel, yLabel, data, series, xScale = { time: false }) {
  new uPlot({ title, width, height: 300, scales: { x: xScale },
    axes: [{ label: xLabel }, { label: yLabel }],
    series: [{ label: xLabel }, ...series] }, data, document.getElementById(id));
  document.getElementById(id).dataset.drawn = "1";
}
const pts = { show: true, size: 8 };
chart("throughput", "Output tokens/s", sweepLabel, "tokens/s", [d.sweep[0], d.sweep[1]], [{ label: "output tokens/s", stroke: colors[0], width: 2, points: pts }], sweepScale);
chart("ttft", "p99 time to first token", sweepLabel, "ms", [d.sweep[0], d.sweep[2]], [{ label: "p99 TTFT (ms)", stroke: colors[1], width: 2, points: pts }], sweepScale);
chart("cdf", "TTFT CDF per point", "time to first token (ms)", "share of requests", d.cdf,
  d.cdfLabels.map((label, i) => ({ label, stroke: colors[i % colors.length], width: 2 })));
`;

export function renderHtmlReport(r: SweepReport): string {
  const data = JSON.stringify(chartData(r)).replace(/</g, "\\u003c");
  const table = formatTable(r).replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const settings = JSON.stringify(r.settings, null, 1).replace(/&/g, "&amp;").replace(/</g, "&lt;");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lora-serve bench serve: ${r.swept} sweep</title>
<style>${uplotCss}
body { font-family: system-ui, sans-serif; margin: 20px; color: #222; } pre { font-size: 12px; background: #f6f6f6; padding: 8px; overflow-x: auto; }
.chart { margin: 16px 0; }</style></head>
<body><h1>lora-serve bench serve</h1>
<p>Target: ${r.target.replace(/</g, "&lt;")}. Swept: ${r.swept}. Started ${r.startedAt} on ${r.host.cpus} × ${r.host.cpu.replace(/</g, "&lt;")} (${r.host.platform}).</p>
<div id="throughput" class="chart"></div><div id="ttft" class="chart"></div><div id="cdf" class="chart"></div>
<h2>Points</h2><pre id="table">${table}</pre>
<h2>Settings</h2><pre>${settings}</pre>
<script type="application/json" id="data">${data}</script>
<script>${uplotJs.replace(/<\/script/gi, "<\\/script")}</script>
<script>${PAGE_SCRIPT}</script>
</body></html>
`;
}

export function writeHtmlReport(path: string, r: SweepReport): void {
  writeFileSync(path, renderHtmlReport(r));
}
