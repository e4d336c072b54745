// Where option values come from, in LMI's order: command-line flags, then `OPTION_*` environment
// variables, then `option.*` lines of serving.properties.
import { existsSync, readFileSync, statSync } from "node:fs";
import { ConfigError, type OptionDef } from "./serve-options.ts";

export type Raw = string | boolean;
export type Properties = Map<string, { value: string; line: number }>;

/** `key=value` lines; `#` / `!` start comments; whitespace is trimmed. */
export function parseProperties(text: string): Map<string, { value: string; line: number }> {
  const out = new Map<string, { value: string; line: number }>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith("!")) return;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new ConfigError(`serving.properties line ${i + 1}: expected key=value, got ${JSON.stringify(line)}`);
    out.set(line.slice(0, eq).trim(), { value: line.slice(eq + 1).trim(), line: i + 1 });
  });
  return out;
}

/** The first source that sets `def`, with a name for messages. */
export function lookup(
  def: OptionDef,
  flags: Record<string, string | boolean | undefined>,
  env: Record<string, string | undefined>,
  props: Properties,
): { raw: Raw; source: string } | undefined {
  const flag = flags[def.flag];
  if (flag !== undefined) return { raw: flag, source: `--${def.flag}` };
  for (const name of def.env) {
    const v = env[name];
    if (v !== undefined) return { raw: v, source: name };
  }
  for (const name of def.property) {
    const p = props.get(name);
    if (p) return { raw: p.value, source: `serving.properties ${name} (line ${p.line})` };
  }
  return undefined;
}

/** The text of `path`, else of ./serving.properties, else of /opt/ml/model/serving.properties; undefined if none exists. */
export function readServingProperties(path?: string): string | undefined {
  if (path !== undefined) {
    if (!existsSync(path)) throw new ConfigError(`--properties: ${JSON.stringify(path)} does not exist`);
    return readFileSync(path, "utf8");
  }
  for (const candidate of ["serving.properties", "/opt/ml/model/serving.properties"]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return readFileSync(candidate, "utf8");
  }
  return undefined;
}
