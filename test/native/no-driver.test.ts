// Where the CUDA library is built but no NVIDIA driver is installed, opening the CUDA device says so
// in those words (the static CUDA runtime itself calls it "driver version is insufficient").
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { Device } from "../../src/native/device.ts";

const built = existsSync(resolve(import.meta.dir, "../../build/libloracuda.so")) && !process.env.LORA_SERVE_LIB_DIR;
const driver = existsSync("/proc/driver/nvidia/version");
const why = !built ? "build/libloracuda.so is not built here (no nvcc)" : driver ? "this machine has an NVIDIA driver" : "";
if (why) console.warn(`skipping the no-driver message check: ${why}`);

test.skipIf(why !== "")("opening CUDA without a driver: \"no NVIDIA driver found\"", async () => {
  const error = await Device.open("cuda").then(() => null, (e: Error) => e);
  expect(error?.message).toContain("no NVIDIA driver found");
});
