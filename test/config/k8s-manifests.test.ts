// deploy/k8s stays consistent with the server: every OPTION_* it sets is one lora-serve reads, the
// pool selects the Deployment's pods on the port the server listens on, and the metric names its
// comment promises the endpoint picker are the ones /metrics exports.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { OPTION_DEFS } from "../../src/config/serve-options.ts";
import { Metrics } from "../../src/engine/metrics.ts";

const DIR = join(import.meta.dir, "../../deploy/k8s");
const docs = (file: string): any[] => {
  const text = readFileSync(join(DIR, file), "utf8");
  return text.split(/^---$/m).map((d) => Bun.YAML.parse(d)).filter(Boolean);
};

test("the Deployment's settings are options lora-serve reads, and the pool selects its pods on its port", () => {
  const deployment = docs("lora-serve-deployment.yaml").find((d) => d.kind === "Deployment");
  const container = deployment.spec.template.spec.containers[0];
  const known = new Set([...OPTION_DEFS.flatMap((d) => d.env), "XDG_CACHE_HOME"]);
  for (const e of container.env) expect({ name: e.name, known: known.has(e.name) }).toEqual({ name: e.name, known: true });
  const port = Number(container.env.find((e: any) => e.name === "OPTION_PORT").value);
  expect(container.ports[0].containerPort).toBe(port);

  const pool = docs("inferencepool.yaml").find((d) => d.kind === "InferencePool");
  expect(pool.apiVersion).toBe("inference.networking.k8s.io/v1");
  expect(deployment.spec.template.metadata.labels).toMatchObject(pool.spec.selector.matchLabels);
  expect(pool.spec.targetPorts).toEqual([{ number: port }]);
});

test("the metric names the pool's comment lists are exported, with their types", async () => {
  const promised = [...readFileSync(join(DIR, "inferencepool.yaml"), "utf8").matchAll(/^#\s+(vllm:\w+)/gm)].map((m) => m[1]);
  expect(promised.length).toBe(5);
  const text = await new Metrics().render();
  for (const name of promised) expect(text).toContain(`# TYPE ${name} gauge`);
});
