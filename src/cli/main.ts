#!/usr/bin/env bun
// lora-serve: one entry point, one file per command; errors end with a message and exit code 1.
import { defineCommand, runCommand, showUsage, type CommandDef } from "citty";
import { readServingProperties } from "../config/config-sources.ts";
import { OPTION_DEFS } from "../config/serve-options.ts";
import { log } from "../log.ts";
import { VERSION } from "../version.ts";
import { benchCommand } from "./bench.ts";
import { generateCommand } from "./generate.ts";

const main = defineCommand({
  meta: { name: "lora-serve", version: VERSION, description: "Serve a base LLM with many LoRA adapters batched together" },
  // serve loads lazily: generate does not need the HTTP server's modules
  subCommands: {
    generate: generateCommand, serve: () => import("./serve.ts").then((m) => m.serveCommand), bench: benchCommand,
    "install-service": () => import("./install-service.ts").then((m) => m.installServiceCommand),
  },
});

/** An LMI container's configuration: an OPTION_* / SAGEMAKER_* variable this server reads, or a serving.properties. */
function lmiConfigured(): boolean {
  const envNames = new Set(OPTION_DEFS.flatMap((d) => d.env).filter((n) => /^(OPTION|SAGEMAKER)_/.test(n)));
  if (Object.keys(process.env).some((k) => envNames.has(k))) return true;
  try {
    return readServingProperties() !== undefined;
  } catch {
    return false;
  }
}

async function run(rawArgs: string[]): Promise<void> {
  // as an LMI container's entrypoint: no command, its configuration in the environment
  if (rawArgs.length === 0 && lmiConfigured()) rawArgs = ["serve"];
  const sub = rawArgs[0];
  if (sub === "--version" || sub === "-v" || sub === "version") {
    console.log(`lora-serve ${VERSION}`);
    return;
  }
  if (rawArgs.length === 0 || rawArgs.includes("--help") || rawArgs.includes("-h")) {
    // the deepest named command: `bench serve --help` shows bench serve's options
    let chosen: CommandDef<any> = main as CommandDef<any>, parent: CommandDef<any> | undefined;
    for (const name of rawArgs.filter((a) => !a.startsWith("-"))) {
      const commands = (chosen.subCommands ?? {}) as Record<string, CommandDef<any> | (() => Promise<CommandDef<any>>)>;
      const entry = commands[name];
      if (!entry) break;
      parent = chosen;
      chosen = typeof entry === "function" ? await entry() : entry;
    }
    await showUsage(chosen, parent);
    return;
  }
  try {
    // `lora-serve --model X --adapters Y` (flags, no command) serves
    await runCommand(main, { rawArgs: sub.startsWith("-") ? ["serve", ...rawArgs] : rawArgs });
  } catch (e) {
    log.error((e as Error).message);
    if (process.env.LORA_SERVE_DEBUG) console.error(e);
    process.exitCode = 1;
  }
}

await run(process.argv.slice(2));
