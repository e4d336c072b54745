// What a start configured as a SageMaker LMI container (OPTION_* variables or a serving.properties)
// gets that a command-line start does not: LMI's documented defaults, and one line naming the
// settings this server reads but cannot honour, instead of ignoring them silently.
import type { Properties } from "./config-sources.ts";
import type { OptionDef, ServeOptions } from "./serve-options.ts";

/** djl-serving's adapters documentation: max_loras 4, max_cpu_loras = max_loras, max_lora_rank 16. */
export const LMI_DEFAULTS: Partial<Record<keyof ServeOptions, unknown | ((o: Partial<ServeOptions>) => unknown)>> = {
  maxLoras: 4,
  maxCpuLoras: (o: Partial<ServeOptions>) => o.maxLoras,
  maxLoraRank: 16,
};

/** Configured as an LMI container: an OPTION_* or SAGEMAKER_* variable this server reads, or a properties file. */
export function isLmiConfigured(defs: OptionDef[], env: Record<string, string | undefined>, props: Properties): boolean {
  const names = new Set(defs.flatMap((d) => d.env).filter((n) => /^(OPTION|SAGEMAKER)_/.test(n)));
  return props.size > 0 || Object.keys(env).some((k) => env[k] !== undefined && names.has(k));
}

// LMI settings whose usual values need nothing from this server; any other value cannot be honoured
const SETTLED: Record<string, (value: string) => boolean> = {
  rolling_batch: (v) => ["auto", "lmi-dist", "vllm", "lmi", "scheduler"].includes(v), // it always batches continuously
  trust_remote_code: (v) => v === "false", // it runs no model code: only the architectures it implements
  engine: (v) => ["python", "mpi"].includes(v.toLowerCase()),
};

/** "NAME=value" for every setting given that no option reads and whose value is not a settled one. */
export function notHonoured(defs: OptionDef[], env: Record<string, string | undefined>, props: Properties): string[] {
  const knownEnv = new Set(defs.flatMap((d) => d.env));
  const knownProps = new Set(defs.flatMap((d) => d.property));
  const settled = (name: string, value: string) => SETTLED[name]?.(value.trim()) ?? false;
  const fromEnv = Object.entries(env)
    .filter(([k, v]) => k.startsWith("OPTION_") && v !== undefined && !knownEnv.has(k) && !settled(k.slice(7).toLowerCase(), v))
    .map(([k, v]) => `${k}=${v}`);
  const fromProps = [...props].filter(([k, p]) => !knownProps.has(k) && !settled(k.replace(/^option\./, ""), p.value)).map(([k, p]) => `${k}=${p.value}`);
  return [...fromEnv, ...fromProps];
}
