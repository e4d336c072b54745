// Whether a request can run on this engine at all (vocabulary, context, KV cache, token budget,
// adapter): refused before it is queued, in the caller's words.
import { UnknownAdapterError } from "../adapters/adapter-store.ts";
import type { ModelConfig } from "../model/config.ts";
import type { Capacities } from "../model/workspace.ts";
import type { BlockManager } from "./block-manager.ts";
import type { EngineAdapters, EngineRequest } from "./engine.ts";
import { MAX_LOGIT_BIAS } from "./logit-rules.ts";
import { checkSamplingParams } from "./sampling.ts";

export class RequestError extends Error {
  override name = "RequestError";
}

export interface CheckContext {
  config: ModelConfig;
  caps: Capacities;
  maxModelLen: number;
  blocks: BlockManager;
  adapters: Pick<EngineAdapters, "has" | "names">;
}

/** Throws RequestError / SamplingError / UnknownAdapterError for a request that cannot run here. */
export function checkRequest(req: EngineRequest, on: CheckContext): void {
  const { config } = on;
  checkSamplingParams(req.params);
  if (req.promptIds.length === 0) throw new RequestError("the prompt is empty");
  const bad = req.promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= config.vocabSize);
  if (bad !== undefined) throw new RequestError(`prompt token id ${bad} is outside the vocabulary [0, ${config.vocabSize})`);
  const bias = req.params.logitBias;
  if (bias && bias.size > MAX_LOGIT_BIAS) throw new RequestError(`logit_bias has ${bias.size} entries, at most ${MAX_LOGIT_BIAS} are taken`);
  const biasOutside = [...(bias?.keys() ?? [])].find((id) => id >= config.vocabSize);
  if (biasOutside !== undefined) throw new RequestError(`logit_bias token id ${biasOutside} is outside the vocabulary [0, ${config.vocabSize})`);
  const total = req.promptIds.length + req.params.maxTokens;
  if (total > on.maxModelLen) {
    throw new RequestError(`the prompt (${req.promptIds.length} tokens) plus max_tokens (${req.params.maxTokens}) is ${total} tokens, over the context length ${on.maxModelLen}`);
  }
  // a request the whole KV cache cannot hold would never finish and would block the queue (FIFO);
  // `total` (not total - 1): a sequence preempted at its last step is readmitted with room for one more
  if (on.blocks.blocksFor(total) > on.blocks.numBlocks) {
    throw new RequestError(`the prompt plus max_tokens (${total} tokens) needs ${on.blocks.blocksFor(total)} KV cache blocks, the cache holds ${on.blocks.numBlocks}`);
  }
  if (req.promptIds.length > on.caps.maxTokens) {
    throw new RequestError(`the prompt (${req.promptIds.length} tokens) exceeds the per-step token budget ${on.caps.maxTokens}`);
  }
  // prompt log-probabilities need logits at every prompt position in the prefill step
  if (req.params.promptLogprobs !== undefined && req.promptIds.length > on.caps.maxLogitRows) {
    throw new RequestError(`prompt log-probabilities are computed for prompts of up to ${on.caps.maxLogitRows} tokens, this one has ${req.promptIds.length}`);
  }
  if (req.adapter !== null && !on.adapters.has(req.adapter)) {
    throw new UnknownAdapterError(`adapter "${req.adapter}" is not known (known: ${on.adapters.names().join(", ") || "none"})`);
  }
}
