// `lora-serve install-service`: writes the systemd unit (deploy/lora-serve.service, its ExecStart
// pointed at this executable) and an environment file holding the given serve options as
// OPTION_* lines, then says the two systemctl commands that start it.
import { defineCommand, type ArgsDef } from "citty";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import unitTemplate from "../../deploy/lora-serve.service" with { type: "text" };
import { OPTION_DEFS, resolveServeOptions } from "../config/serve-options.ts";
import { log } from "../log.ts";
import { CliError } from "./args.ts";

const args: ArgsDef = {
  ...Object.fromEntries(OPTION_DEFS.map((d) => [d.flag, { type: d.boolean ? "boolean" : "string", description: d.description }])),
  "unit-dir": { type: "string", default: "/etc/systemd/system", description: "Where the unit goes" },
  "env-file": { type: "string", default: "/etc/lora-serve/lora-serve.env", description: "Where the OPTION_* settings go (mode 0600: it may hold API keys)" },
  exec: { type: "string", description: "The lora-serve executable the unit runs (default: this one)" },
};

/** The unit with ExecStart and EnvironmentFile set. */
export function unitText(exec: string, envFile: string): string {
  return unitTemplate
    .replace(/^ExecStart=.*$/m, `ExecStart=${exec} serve`)
    .replace(/^EnvironmentFile=.*$/m, `EnvironmentFile=-${envFile}`);
}

/** OPTION_* lines for the options given on the command line. */
export function envFileText(given: Record<string, string | boolean | undefined>): string {
  const lines = ["# lora-serve settings (OPTION_* as SageMaker LMI names them); see lora-serve serve --help"];
  for (const d of OPTION_DEFS) {
    const v = given[d.flag];
    if (v === undefined) continue;
    const name = d.env.find((e) => e.startsWith("OPTION_"))!;
    if (/[\n\r]/.test(String(v))) throw new CliError(`--${d.flag}: a value may not span lines`);
    lines.push(`${name}=${JSON.stringify(String(v))}`);
  }
  return lines.join("\n") + "\n";
}

export const installServiceCommand = defineCommand({
  meta: { name: "install-service", description: "Write a hardened systemd unit and its settings file (run as root)" },
  args,
  run({ args: a }) {
    const given = Object.fromEntries(OPTION_DEFS.map((d) => [d.flag, a[d.flag] as string | boolean | undefined]));
    resolveServeOptions(given, {}); // refuse bad settings now, not at the service's first start
    const exec = resolve(String(a.exec ?? process.execPath));
    if (!existsSync(exec)) throw new CliError(`--exec: ${exec} does not exist`);
    if (exec.endsWith("/bun")) throw new CliError("run install-service from the built executable (make build), or give --exec");
    const unitPath = join(String(a["unit-dir"]), "lora-serve.service");
    const envPath = resolve(String(a["env-file"]));
    mkdirSync(dirname(unitPath), { recursive: true });
    mkdirSync(dirname(envPath), { recursive: true });
    writeFileSync(unitPath, unitText(exec, envPath));
    writeFileSync(envPath, envFileText(given), { mode: 0o600 });
    chmodSync(envPath, 0o600);
    log.info(`wrote ${unitPath} and ${envPath}; start it with: systemctl daemon-reload && systemctl enable --now lora-serve`);
  },
});
