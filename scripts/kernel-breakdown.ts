// Splits an ncu CSV (`--csv --page raw --metrics gpu__time_duration.sum --print-units base`) of a
// `bench --synthetic --profile` run back into its ranges, and prints each range's kernel time by kernel.
//   bun scripts/kernel-breakdown.ts ncu.csv bench.json
import { readFileSync } from "node:fs";

function parseCsvLine(line: string): string[] {
  const cells: string[] = [];
  let cell = "", quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') (cell += '"'), i++;
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") cells.push(cell), (cell = "");
    else cell += c;
  }
  cells.push(cell);
  return cells;
}

const [csvPath, benchPath] = process.argv.slice(2);
const lines = readFileSync(csvPath, "utf8").split("\n").filter((l) => l.startsWith('"'));
const header = parseCsvLine(lines[0]);
const nameCol = header.indexOf("Kernel Name"), timeCol = header.indexOf("gpu__time_duration.sum");
if (nameCol < 0 || timeCol < 0) throw new Error(`no Kernel Name / gpu__time_duration.sum columns in ${csvPath}`);
const labels: string[] = benchPath ? (JSON.parse(readFileSync(benchPath, "utf8")).profiledRanges ?? []) : [];

const ranges: { label: string; kernels: Map<string, { n: number; ns: number }> }[] = [];
for (const line of lines.slice(1)) {
  const cells = parseCsvLine(line);
  const ns = Number(cells[timeCol].replaceAll(",", "")); // ncu groups thousands
  if (!Number.isFinite(ns)) continue; // the units row
  const name = cells[nameCol];
  if (name.startsWith("fill_random")) {
    ranges.push({ label: labels[ranges.length] ?? `range ${ranges.length + 1}`, kernels: new Map() });
    continue;
  }
  if (ranges.length === 0) continue;
  const k = ranges[ranges.length - 1].kernels;
  const e = k.get(name) ?? { n: 0, ns: 0 };
  e.n++;
  e.ns += ns;
  k.set(name, e);
}
for (const r of ranges) {
  const total = [...r.kernels.values()].reduce((s, e) => s + e.ns, 0);
  const launches = [...r.kernels.values()].reduce((s, e) => s + e.n, 0);
  console.log(`== ${r.label}: ${(total / 1e6).toFixed(3)} ms of kernels, ${launches} launches`);
  for (const [name, e] of [...r.kernels].sort((a, b) => b[1].ns - a[1].ns)) {
    console.log(`  ${(e.ns / 1e6).toFixed(3).padStart(8)} ms ${String(e.n).padStart(5)} x ${(e.ns / e.n / 1e3).toFixed(1).padStart(7)} us  ${name.slice(0, 90)}`);
  }
}
