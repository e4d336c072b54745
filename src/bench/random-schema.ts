// Random JSON schemas for structured-output tests and the grammar benchmark: objects (nested), arrays, enums, bounded integers,
// booleans, strings bounded by maxLength or a pattern, required and optional properties. Every
// value the schema allows is finite in length, so a constrained run at any temperature ends.
export type Rng = () => number;
export { seededRandom } from "./serve/workload.ts";

const WORDS = ["alpha", "beta", "gamma", "delta", "red", "green", "on", "off", "yes", "no"];
const PATTERNS = ["^[a-z]{1,6}$", "^[A-Z][0-9]{2}$", "^(cat|dog|bird)-[0-9]$", "^[0-9]{3}-[0-9]{2}$"];

export function randomSchema(rand: Rng, depth = 0): Record<string, unknown> {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  const kinds = depth >= 2 ? ["string", "integer", "boolean", "enum", "pattern"] : ["string", "integer", "boolean", "enum", "pattern", "object", "array"];
  const kind = depth === 0 ? "object" : pick(kinds);
  switch (kind) {
    case "string": return { type: "string", maxLength: 1 + Math.floor(rand() * 8) };
    case "pattern": return { type: "string", pattern: pick(PATTERNS) };
    case "integer": {
      const min = Math.floor(rand() * 200) - 100;
      return { type: "integer", minimum: min, maximum: min + Math.floor(rand() * 1000) };
    }
    case "boolean": return { type: "boolean" };
    case "enum": return { enum: [...new Set(Array.from({ length: 2 + Math.floor(rand() * 3) }, () => pick(WORDS)))] };
    case "array": return { type: "array", items: randomSchema(rand, depth + 1), minItems: 0, maxItems: 1 + Math.floor(rand() * 3) };
    default: {
      const n = 1 + Math.floor(rand() * 4), properties: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) properties[`${pick(WORDS)}_${i}`] = randomSchema(rand, depth + 1);
      const names = Object.keys(properties);
      return { type: "object", properties, required: names.filter((_, i) => i === 0 || rand() < 0.5), additionalProperties: false };
    }
  }
}
