// Parsing helpers for numeric command-line options, with errors that name the flag.

export class CliError extends Error {
  override name = "CliError";
}

export function numberArg(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw new CliError(`${flag}: expected a number, got ${JSON.stringify(value)}`);
  return n;
}

export function intArg(value: string | undefined, flag: string): number | undefined {
  const n = numberArg(value, flag);
  if (n !== undefined && !Number.isInteger(n)) throw new CliError(`${flag}: expected an integer, got ${value}`);
  return n;
}
