// The config-pattern guard: the regexes PEFT users write pass; the shapes that backtrack
// exponentially, backreferences and lookarounds are refused with the reason.
import { expect, test } from "bun:test";
import { unsafeRegexReason } from "../../src/adapters/safe-regex.ts";

test("patterns PEFT configs use are accepted", () => {
  for (const p of [".*\\.(q_proj|v_proj)", "model\\.layers\\.\\d+\\.self_attn\\.(q|k|v)_proj", "(?:.*\\.)?(q_proj|k_proj)", "layers\\.[0-9]+\\.mlp\\.down_proj", "(a+)?", "[(]+x", "\\(a+\\)+"]) {
    expect([p, unsafeRegexReason(p)]).toEqual([p, null]);
  }
});

test("nested repeats, backreferences, lookarounds, bad syntax and huge patterns are refused", () => {
  const cases: [string, string][] = [
    ["(.+)+X", "catastrophic backtracking"], ["(a*)*b", "catastrophic backtracking"], ["(x|y+){2,}", "catastrophic backtracking"],
    ["((a+)b)+", "catastrophic backtracking"], ["(a)\\1", "backreference"], ["(?=a)b", "lookaround"], ["(?<!a)b", "lookaround"],
    ["(unclosed", "not a valid regular expression"], ["a".repeat(1001), "over 1000 characters"],
  ];
  for (const [p, why] of cases) expect(unsafeRegexReason(p)).toContain(why);
});
