// Rewrites a .cu file for the emulator: `kernel<<<cfg>>>(args)` becomes `emu::launch(kernel,
// emu::cfg(cfg), args)`, and `extern __shared__ T name[];` a pointer to the emulated dynamic shared memory.
//   bun test/cuda-emu/prep.ts in.cu out.cpp
import { readFileSync, writeFileSync } from "node:fs";

const [input, output] = process.argv.slice(2);
if (!input || !output) throw new Error("usage: prep.ts in.cu out.cpp");
let src = readFileSync(input, "utf8");
src = src.replace(/extern __shared__ (?:__align__\(\d+\) )?(\w+) (\w+)\[\];/g, "$1 *$2 = static_cast<$1 *>(emu::dyn_smem());");

const out: string[] = [];
let i = 0;
for (;;) {
  const j = src.indexOf("<<<", i);
  if (j < 0) {
    out.push(src.slice(i));
    break;
  }
  // walk back over the kernel expression: identifiers, ::, and balanced <...>
  let k = j, depth = 0;
  while (k > 0) {
    const c = src[k - 1];
    if (c === ">") depth++;
    else if (c === "<") depth--;
    else if (depth === 0 && !/[A-Za-z0-9_:]/.test(c)) break;
    k--;
  }
  const e = src.indexOf(">>>(", j);
  if (e < 0) throw new Error(`${input}: <<< without >>>( at offset ${j}`);
  const name = src.slice(k, j), cfg = src.slice(j + 3, e), rest = e + 4;
  out.push(src.slice(i, k), `emu::launch(${name}, emu::cfg(${cfg})${src[rest] === ")" ? "" : ", "}`);
  i = rest;
}
writeFileSync(output, out.join(""));
