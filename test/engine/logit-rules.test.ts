// Penalties, logit_bias and min_p through the engine on the CPU twin (the case: test/helpers/logit-rules-engine-case.ts).
import { test } from "bun:test";
import { logitRulesEngineCase } from "../helpers/logit-rules-engine-case.ts";
import { loadFixtureModel } from "../helpers/fixtures.ts";

// the twin computes a prefix's logits alike in prefill and decode: no slack
logitRulesEngineCase("tiny-llama2 on the CPU twin", () => loadFixtureModel("tiny-llama2", { maxLogitRows: 1024, maxTokens: 1024 }), { act: "F32", slack: 0, test, seeded: true });
