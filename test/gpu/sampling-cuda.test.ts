// Penalties, logit_bias, min_p and a grammar row through the engine on CUDA (the case:
// test/helpers/logit-rules-engine-case.ts): count tables, masks and rules on the device. Skipped,
// with the reason printed, where no GPU is present; the emulator runs it in CI.
import { test } from "bun:test";
import { loadModel } from "../../src/engine/load-model.ts";
import { adaptersDir, modelDir } from "../helpers/fixtures.ts";
import { logitRulesEngineCase } from "../helpers/logit-rules-engine-case.ts";
import { openCuda } from "./harness.ts";

const cuda = await openCuda("test/gpu/sampling-cuda.test.ts");
// fp16 activations: a prefix's decode-step logits sit within ~0.02 of its prefill logits (the
// fixtures' measured worst top-16 error vs HF is 0.02, bound 0.05); greedy decisions closer than
// 0.05 are not compared, and seeded ones are left to the op-level tests (see the case)
logitRulesEngineCase("tiny-llama2 on CUDA", async () => cuda ? loadModel({
  modelDir: modelDir("tiny-llama2"), adaptersDir: adaptersDir("tiny-llama2"), device: cuda, maxLogitRows: 512, maxTokens: 512,
}) : null, { act: "F16", slack: 0.05, test: cuda ? test : test.skip, seeded: false });
