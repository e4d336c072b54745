#!/usr/bin/env bun
// lora-serve: one entry point, one file per command; errors end with a message and exit code 1.
import { defineCommand, runCommand, showUsage, type CommandDef } from "citty";
import { log } from "../log.ts";
import { generateCommand } from "./generate.ts";

const main = defineCommand({
  meta: { name: "lora-serve", version: "0.1.0", description: "Serve a base LLM with many LoRA adapters batched together" },
  subCommands: { generate: generateCommand },
});

async function run(rawArgs: string[]): Promise<void> {
  const sub = rawArgs[0];
  if (rawArgs.length === 0 || rawArgs.includes("--help") || rawArgs.includes("-h")) {
    const commands = (main.subCommands ?? {}) as Record<string, CommandDef<any>>;
    const chosen = sub ? commands[sub] : undefined;
    await showUsage(chosen ?? main, chosen ? (main as CommandDef<any>) : undefined);
    return;
  }
  try {
    await runCommand(main, { rawArgs });
  } catch (e) {
    log.error((e as Error).message);
    if (process.env.LORA_SERVE_DEBUG) console.error(e);
    process.exitCode = 1;
  }
}

await run(process.argv.slice(2));
