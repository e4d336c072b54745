// Patterns from adapter configs (target_modules, rank_pattern, alpha_pattern keys) run on every
// load: a pattern that can backtrack catastrophically would freeze the server. Refused: a quantified
// group that itself holds a quantifier (`(.+)+`, `(a*)*`, `(x|y+){2,}`), backreferences, lookarounds,
// and patterns over 1,000 characters. What is left matches in time polynomial in the (short) paths.

const MAX_LENGTH = 1000;

/** Why `pattern` is refused, or null when it is safe to run. */
export function unsafeRegexReason(pattern: string): string | null {
  if (pattern.length > MAX_LENGTH) return `it is over ${MAX_LENGTH} characters`;
  if (/\\[1-9]|\\k</.test(pattern)) return "it uses a backreference";
  if (/\(\?<?[=!]/.test(pattern)) return "it uses a lookaround";
  // per open group: whether a quantifier occurred inside it
  const groups: boolean[] = [];
  let lastGroupQuantified = false, inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") {
      i++;
      lastGroupQuantified = false;
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      continue;
    }
    const quantifier = c === "*" || c === "+" || c === "?" || (c === "{" && /^\{\d*,?\d*\}/.test(pattern.slice(i)));
    if (quantifier) {
      const unbounded = c === "*" || c === "+" || (c === "{" && /^\{\d*,\}/.test(pattern.slice(i)));
      if (lastGroupQuantified && unbounded) return "a repeated group holds a repeat of its own (catastrophic backtracking)";
      if (unbounded && groups.length > 0) groups[groups.length - 1] = true;
      lastGroupQuantified = false;
      if (c === "{") i = pattern.indexOf("}", i);
      continue;
    }
    lastGroupQuantified = false;
    if (c === "[") inClass = true;
    else if (c === "(") groups.push(false);
    else if (c === ")") {
      const inner = groups.pop() ?? false;
      lastGroupQuantified = inner;
      if (inner && groups.length > 0) groups[groups.length - 1] = true;
    }
  }
  try {
    new RegExp(pattern);
  } catch (e) {
    return `it is not a valid regular expression (${(e as Error).message})`;
  }
  return null;
}
