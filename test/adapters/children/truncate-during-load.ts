// Run as a child by truncate-during-load.test.ts: starts loading an adapter, truncates its weights
// file while the load is under way, and prints how the load ended. A SIGBUS would kill this process.
import { cpSync, mkdtempSync, rmSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadLoraAdapterAsync } from "../../../src/adapters/lora-adapter.ts";
import { readModelConfig } from "../../../src/model/config.ts";

const [adapterDir, modelDir] = process.argv.slice(2);
const scratch = mkdtempSync(join(tmpdir(), "lora-serve-truncate-"));
const dir = join(scratch, "adapter");
cpSync(adapterDir, dir, { recursive: true });
const base = { config: readModelConfig(modelDir), weight: () => { throw new Error("no DoRA here"); } };
const loading = loadLoraAdapterAsync(dir, "victim", base, { maxLoraRank: 64 });
setImmediate(() => truncateSync(join(dir, "adapter_model.safetensors"), 64)); // between the modules' conversions
try {
  console.log(`loaded ${(await loading).modules.length} modules`);
} catch (e) {
  console.log(`refused: ${(e as Error).message}`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
