// LoraSlots' packed adapter images in Device.hostAlloc memory (pinned on CUDA): the device bytes a
// load publishes, and the ownership rule: an image lives while its adapter is in the host tier.
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { AdapterStore } from "../../src/adapters/adapter-store.ts";
import type { BaseModelView, LoraAdapter } from "../../src/adapters/lora-adapter.ts";
import { LoraSlots } from "../../src/adapters/lora-slots.ts";
import { EngineService } from "../../src/engine/engine-service.ts";
import { loadModel } from "../../src/engine/load-model.ts";
import { Metrics } from "../../src/engine/metrics.ts";
import { readModelConfig, type ModelConfig } from "../../src/model/config.ts";
import { encodeFloats } from "../../src/model/convert.ts";
import { openCheckpoint } from "../../src/model/safetensors.ts";
import { projectionName } from "../../src/model/weights.ts";
import { Device, type NumericDType } from "../../src/native/device.ts";
import { adaptersDir, comparableSteps, greedyParams, modelDir, readReference } from "../helpers/fixtures.ts";

// a device of this file's own, so that hostAllocations counts only what these tests hold
const device = await Device.open("cpu");
afterAll(() => device.close());

const checkpoint = openCheckpoint(modelDir("tiny-llama2"));
const config: ModelConfig = readModelConfig(modelDir("tiny-llama2"));
const base: BaseModelView = { config, weight: (layer, module) => checkpoint.get(projectionName(layer, module))! };
const L2 = adaptersDir("tiny-llama2");
const NAMES = ["dora", "es", "fr", "rp", "rs", "ru"];

function store(maxCpuLoras = Infinity): AdapterStore {
  const s = new AdapterStore(base, 64, maxCpuLoras);
  s.addDirectory(L2);
  return s;
}

function read(ptrOf: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  device.download(ptrOf, out);
  return out;
}

/** What the slot's tables point at equals each module's weights encoded the old way (encodeFloats), bit for bit. */
function expectSlotHolds(slots: LoraSlots, slot: number, adapter: LoraAdapter, dtype: NumericDType): void {
  for (const m of adapter.modules) {
    const t = slots.tables(m.layer, m.module);
    const at = (table: number) => Number(new BigUint64Array(read(table + slot * 8, 8).buffer)[0]);
    expect(new Int32Array(read(t.ranks + slot * 4, 4).buffer)[0]).toBe(m.rank);
    expect(new Float32Array(read(t.scales + slot * 4, 4).buffer)[0]).toBe(Math.fround(m.scale));
    const a = encodeFloats(m.a, dtype), b = encodeFloats(m.b, dtype);
    expect(Buffer.compare(Buffer.from(read(at(t.aPtrs), a.byteLength)), Buffer.from(a))).toBe(0);
    expect(Buffer.compare(Buffer.from(read(at(t.bPtrs), b.byteLength)), Buffer.from(b))).toBe(0);
    if (m.doraScale) {
      const mag = encodeFloats(m.doraScale, "F32");
      expect(Buffer.compare(Buffer.from(read(at(t.doraMag), mag.byteLength)), Buffer.from(mag))).toBe(0);
    } else {
      expect(at(t.doraMag)).toBe(0);
    }
  }
}

describe("LoraSlots packed images in host-allocated memory", () => {
  for (const dtype of ["F32", "F16", "BF16"] as const) {
    test(`${dtype}: every adapter's slot holds its encoded weights; one image per adapter, reused`, () => {
      const s = store();
      const slots = new LoraSlots(device, config, 2, dtype, 64);
      const before = device.hostAllocations;
      NAMES.forEach((name, i) => {
        const adapter = s.get(name);
        slots.load(i % 2, adapter);
        expectSlotHolds(slots, i % 2, adapter, dtype);
      });
      expect(slots.packedImages).toBe(NAMES.length);
      expect(device.hostAllocations).toBe(before + NAMES.length);
      slots.load(0, s.get("fr")); // packed once: a reload allocates nothing
      expectSlotHolds(slots, 0, s.get("fr"), dtype);
      expect(device.hostAllocations).toBe(before + NAMES.length);
      slots.free();
      expect(slots.packedImages).toBe(0);
      expect(device.hostAllocations).toBe(before);
    });
  }

  test("forget frees the image; the slot keeps its copy; a forgotten adapter loads from a transient image", () => {
    const s = store();
    const slots = new LoraSlots(device, config, 2, "F32", 64);
    const before = device.hostAllocations;
    const fr = s.get("fr"), es = s.get("es");
    slots.load(0, fr);
    slots.load(1, es);
    expect(device.hostAllocations).toBe(before + 2);
    slots.forget(fr);
    expect(device.hostAllocations).toBe(before + 1);
    expectSlotHolds(slots, 0, fr, "F32"); // device memory is not the host tier's
    slots.load(1, fr);
    expectSlotHolds(slots, 1, fr, "F32");
    expect(device.hostAllocations).toBe(before + 1);
    slots.forget(fr); // again: nothing left to free
    slots.free();
    expect(device.hostAllocations).toBe(before);
  });

  test("a forget during the upload leaves the image alone until the upload has returned", () => {
    const s = store();
    const fr = s.get("fr");
    let slots: LoraSlots;
    let during = -1;
    // a device whose upload forgets the adapter first (as a drop racing a load would)
    const racing = new Proxy(device, {
      get(target, key) {
        if (key === "upload") {
          return (dst: number, src: Uint8Array, bytes?: number) => {
            if (src.byteLength > 1024) {
              slots.forget(fr);
              during = device.hostAllocations;
              expect(src.byteLength).toBeGreaterThan(0); // still attached: not freed under the copy
            }
            target.upload(dst, src, bytes);
          };
        }
        const v = Reflect.get(target, key, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    slots = new LoraSlots(racing, config, 1, "F32", 64);
    const before = device.hostAllocations;
    slots.load(0, fr);
    expect(during).toBe(before + 1);
    expect(device.hostAllocations).toBe(before);
    expectSlotHolds(slots, 0, fr, "F32");
    slots.free();
  });
});

describe("adapters leaving the host tier release their image", () => {
  test("AdapterStore.onDrop reports LRU drops, re-registration and unregistration with the adapter object", () => {
    const s = store(2);
    const dropped: [string, LoraAdapter][] = [];
    const off = s.onDrop((adapter, name) => dropped.push([name, adapter]));
    const fr = s.get("fr");
    s.get("es");
    s.get("ru"); // over 2: fr (least recently used) goes
    expect(dropped).toEqual([["fr", fr]]);
    s.register("es", join(L2, "es"));
    s.unregister("ru");
    expect(dropped.map(([n]) => n)).toEqual(["fr", "es", "ru"]);
    off();
    s.get("fr");
    s.unregister("fr");
    expect(dropped.length).toBe(3);
  });

  test("through the engine: 6 adapters over 2 host and 2 device slots keep at most 2 images", async () => {
    const atStart = device.hostAllocations;
    const model = loadModel({ modelDir: modelDir("tiny-llama2"), adaptersDir: L2, device, maxSeqs: 16, maxLoras: 2, maxCpuLoras: 2 });
    const before = device.hostAllocations; // the runner's own pinned buffer (step metadata) included
    const images = () => device.hostAllocations - before;
    const ref = await readReference("tiny-llama2");
    const svc = new EngineService(model, { name: "tiny-llama2", maxQueue: 64, metrics: new Metrics() });
    svc.start();
    let peak = 0;
    for (const c of ref.cases.filter((c) => c.adapter !== null)) {
      const h = svc.submit({ promptIds: c.prompt_ids, adapter: c.adapter, params: greedyParams(4) });
      const ids: number[] = [];
      for await (const e of h.events) {
        ids.push(e.token.id);
        peak = Math.max(peak, images());
      }
      const n = Math.min(4, comparableSteps(c.greedy_steps, 2e-4)); // as in engine-service.test.ts
      expect(ids.slice(0, n)).toEqual(c.greedy_ids.slice(0, n)); // the slots hold the right weights
      expect(images()).toBe(model.runner.lora.packedImages);
      expect(images()).toBeLessThanOrEqual(2);
    }
    expect(new Set(ref.cases.map((c) => c.adapter).filter((a) => a !== null)).size).toBeGreaterThan(2);
    expect(peak).toBeGreaterThan(0);
    // unregistering drops the rest
    for (const name of model.adapters.names()) model.adapters.unregister(name);
    expect(images()).toBe(0);
    svc.stop();
    model.runner.free();
    expect(device.hostAllocations).toBe(atStart);
  });

  test("an adapter's image is packed as it enters host memory, so its first slot load only uploads", async () => {
    const model = loadModel({ modelDir: modelDir("tiny-llama2"), adaptersDir: L2, device, maxSeqs: 16, maxLoras: 2, maxCpuLoras: 4 });
    const lora = model.runner.lora;
    expect(lora.packedImages).toBe(0);
    await model.adapters.load("es");
    expect(lora.packedImages).toBe(1); // packed at host entry, before any slot holds it
    const svc = new EngineService(model, { name: "tiny-llama2", maxQueue: 64, metrics: new Metrics() });
    svc.start();
    for await (const _ of svc.submit({ promptIds: [1, 450, 7483], adapter: "es", params: greedyParams(2) }).events) { /* tokens */ }
    expect(lora.packedImages).toBe(1); // the slot load reused it
    svc.stop();
    model.runner.free();
  });
});
