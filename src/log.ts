// The one logger (to stderr): consola at info level, even under test runners that would lower it.
import { createConsola } from "consola";

export const log = createConsola({
  level: Number(process.env.LORA_SERVE_LOG_LEVEL ?? 3),
  stdout: process.stderr, // stdout carries results (generate --json), never log lines
  stderr: process.stderr,
});
