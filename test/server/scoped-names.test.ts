// Adapter names are scoped by base model: tiny-llama2 and tiny-mistral both hold an adapter "fr".
// Each qualified name serves its own base's weights (the HF + PEFT reference output); the bare name
// is refused with the choices, never guessed; /v1/models lists each adapter once per base.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { EngineService } from "../../src/engine/engine-service.ts";
import { Metrics } from "../../src/engine/metrics.ts";
import { startServer, type RunningServer } from "../../src/server/http.ts";
import { ModelRegistry } from "../../src/server/model-registry.ts";
import { comparableSteps, loadFixtureModel, readReference, type FixtureModel, type ReferenceCase } from "../helpers/fixtures.ts";

const BASES: FixtureModel[] = ["tiny-llama2", "tiny-mistral"];
let server: RunningServer;
const services: EngineService[] = [];
const frCase = new Map<FixtureModel, ReferenceCase>();

beforeAll(async () => {
  const registry = new ModelRegistry(), metrics = new Metrics();
  for (const name of BASES) {
    const service = new EngineService(await loadFixtureModel(name, { maxSeqs: 8 }), { name, maxQueue: 64, metrics });
    service.start();
    registry.add(service);
    services.push(service);
    frCase.set(name, (await readReference(name)).cases.find((c) => c.adapter === "fr" && c.prompt === "plain")!);
  }
  server = startServer({ registry, metrics, host: "127.0.0.1", port: 0, maxBodyBytes: 1 << 20, log: () => {}, adapterPolicy: { runtimeUpdates: true, allowedRoots: [] } });
});
afterAll(async () => {
  await server.stop();
  for (const s of services) s.stop();
});

const post = (path: string, body: unknown) =>
  fetch(`${server.url}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

async function greedy(model: string, c: ReferenceCase) {
  const r = await post("/v1/completions", { model, prompt: c.prompt_ids, max_tokens: c.greedy_ids.length, temperature: 0, ignore_eos: true, return_token_ids: true });
  return { status: r.status, body: (await r.json()) as any };
}

// the CPU twin's logits are within 1e-5 of the reference; steps with a margin under 2e-4 may differ
const expectReference = (ids: number[], c: ReferenceCase) => {
  const n = comparableSteps(c.greedy_steps, 2e-4);
  expect(n).toBeGreaterThan(3);
  expect(ids.slice(0, n)).toEqual(c.greedy_ids.slice(0, n));
};

describe("adapter names scoped by base", () => {
  test("BASE:fr serves that base's fr, for both bases", async () => {
    for (const base of BASES) {
      const { status, body } = await greedy(`${base}:fr`, frCase.get(base)!);
      expect(status).toBe(200);
      expect(body.model).toBe(`${base}:fr`);
      expectReference(body.choices[0].token_ids, frCase.get(base)!);
    }
    // the two bases' fr really differ on this prompt, so the test can tell them apart
    expect(frCase.get("tiny-llama2")!.greedy_ids).not.toEqual(frCase.get("tiny-mistral")!.greedy_ids);
  });

  test("the bare shared name is refused (400) with the qualified names; a bare unique name still serves", async () => {
    const { status, body } = await greedy("fr", frCase.get("tiny-llama2")!);
    expect(status).toBe(400);
    expect(body.error.param).toBe("model");
    expect(body.error.message).toContain("tiny-llama2:fr, tiny-mistral:fr");
    expect((await greedy("es", frCase.get("tiny-llama2")!)).status).toBe(200);
    expect((await greedy("tiny-llama2:nope", frCase.get("tiny-llama2")!)).status).toBe(404);
    expect((await greedy("tiny-llama3:fr", frCase.get("tiny-llama2")!)).status).toBe(404);
  });

  test("/v1/models: each adapter once per base, with its parent and qualified id", async () => {
    const data = ((await (await fetch(`${server.url}/v1/models`)).json()) as any).data as { id: string; qualified_id: string; parent: string | null }[];
    const fr = data.filter((m) => m.qualified_id.endsWith(":fr"));
    expect(fr.map((m) => [m.id, m.parent])).toEqual([["tiny-llama2:fr", "tiny-llama2"], ["tiny-mistral:fr", "tiny-mistral"]]);
    expect(data.find((m) => m.qualified_id === "tiny-llama2:es")?.id).toBe("es"); // unique: the bare name is its id
    expect(data.filter((m) => m.parent === null).map((m) => m.id)).toEqual(BASES);
  });

  test("LMI: adapters resolve within the body's model; the bare shared name alone is refused", async () => {
    const c = frCase.get("tiny-mistral")!;
    const text = services[1].model.tokenizer.decode(c.prompt_ids, { skipSpecialTokens: true });
    const within = await post("/invocations", { model: "tiny-mistral", inputs: text, adapters: "fr", parameters: { max_new_tokens: 4 } });
    expect(within.status).toBe(200);
    const alone = await post("/invocations", { inputs: text, adapters: "fr", parameters: { max_new_tokens: 4 } });
    expect(alone.status).toBe(400);
    expect(await alone.text()).toContain("tiny-llama2:fr, tiny-mistral:fr");
  });

  test("unload takes the qualified name; the bare one then names the only fr left", async () => {
    expect((await post("/v1/unload_lora_adapter", { lora_name: "fr" })).status).toBe(400);
    expect((await post("/v1/unload_lora_adapter", { lora_name: "tiny-mistral:fr" })).status).toBe(200);
    const { status, body } = await greedy("fr", frCase.get("tiny-llama2")!);
    expect(status).toBe(200);
    expectReference(body.choices[0].token_ids, frCase.get("tiny-llama2")!);
  });
});
