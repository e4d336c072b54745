// The executable carries two CPU libraries; the processor's flags pick the one it can run.
import { expect, test } from "bun:test";
import { cpuLibraryStems } from "../../src/native/library-path.ts";

const HASWELL = "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx avx2 bmi1 bmi2 f16c fma movbe xsave abm\n";
const SANDY_BRIDGE = "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx xsave\n";

test("x86-64-v3 where AVX2, FMA, BMI and the rest are all there; baseline otherwise", () => {
  expect(cpuLibraryStems(HASWELL)).toEqual(["libloracpu-x86-64-v3", "libloracpu-x86-64", "libloracpu"]);
  expect(cpuLibraryStems(SANDY_BRIDGE)).toEqual(["libloracpu-x86-64", "libloracpu"]);
  expect(cpuLibraryStems(HASWELL.replace(" movbe", ""))).toEqual(["libloracpu-x86-64", "libloracpu"]);
  expect(cpuLibraryStems("")).toEqual(["libloracpu-x86-64", "libloracpu"]);
});
