// The one logger (to stderr): consola at info level, even under test runners that would lower it.
// `--log-format json` turns every line into one JSON object (time, level, msg, and a request's
// fields) for log shippers.
import { createConsola, type LogObject } from "consola";

export type LogFormat = "text" | "json";

export const log = createConsola({
  level: Number(process.env.LORA_SERVE_LOG_LEVEL ?? 3),
  stdout: process.stderr, // stdout carries results (generate --json), never log lines
  stderr: process.stderr,
});

let format: LogFormat = "text";

/** A structured line's fields ride as the second argument, marked so text output never sees them. */
const FIELDS = Symbol("fields");
type Fields = Record<string, string | number | boolean | null>;

export function setLogFormat(f: LogFormat, out: NodeJS.WritableStream = process.stderr): void {
  format = f;
  if (f === "text") return;
  log.setReporters([{
    log(o: LogObject) {
      const [msg, ...rest] = o.args;
      const fields = rest.find((a) => a && typeof a === "object" && FIELDS in a) as { [FIELDS]: Fields } | undefined;
      const text = [msg, ...rest.filter((a) => a !== fields)].map((a) => (a instanceof Error ? a.stack ?? a.message : String(a))).join(" ");
      out.write(JSON.stringify({ time: o.date.toISOString(), level: o.type, msg: text, ...fields?.[FIELDS] }) + "\n");
    },
  }]);
}

/** An info line with fields: `message k=v ...` as text, the fields as keys of the JSON object. */
export function logFields(message: string, fields: Fields): void {
  if (format === "json") return void log.info(message, { [FIELDS]: fields });
  const pairs = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === "string" && /[\s"=]/.test(v) ? JSON.stringify(v) : v}`);
  log.info(`${message} ${pairs.join(" ")}`);
}
