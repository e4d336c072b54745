// The grammar thread: compiles structured-output constraints with xgrammar (WebAssembly) and keeps
// one matcher per constrained sequence, writing each step's next-token masks into shared memory
// while the engine thread runs the forward pass. Compilation (tens of ms for a schema) happens here,
// off the event loop. Compiled grammars are cached by key; unused ones are dropped past CACHE_SIZE.
import * as xg from "@mlc-ai/web-xgrammar";
import { choiceRegex, type GrammarSpec } from "./grammar-spec.ts";
import { controlCharTokens } from "./grammar-vocab.ts";
import { HEADER_WORDS, ROW_NO_GRAMMAR, ROW_OK, ROW_REJECTED, type GrammarReply, type GrammarRequest, type MaskRowRequest } from "./grammar-protocol.ts";

declare const self: Worker;
const CACHE_SIZE = 256;

let compiler: xg.GrammarCompiler;
let header: Int32Array, status: Int32Array, masks: Uint32Array, words = 0;
const compiled = new Map<string, xg.CompiledGrammar>(); // insertion order = least recently used first
const isJson = new Set<string>(); // keys of JSON constraints: no raw control characters (see controlCharTokens)
let controlTokens: Uint32Array = new Uint32Array(0);
const matchers = new Map<number, { matcher: xg.GrammarMatcher; key: string }>();

function compileSpec(spec: GrammarSpec): Promise<xg.CompiledGrammar> {
  switch (spec.kind) {
    // compact JSON on one line (", " and ": "): a model cannot wander into endless whitespace
    case "json_object": return compiler.compileJSONSchema(JSON.stringify({ type: "object" }), false, -1, undefined, false);
    case "json_schema": return compiler.compileJSONSchema(spec.schema, false, -1, undefined, true);
    case "regex": return compiler.compileStructuralTag({ type: "structural_tag", format: { type: "regex", pattern: spec.pattern } } as never);
    case "choice": return compiler.compileStructuralTag({ type: "structural_tag", format: { type: "regex", pattern: choiceRegex(spec.choices) } } as never);
    case "grammar": return compiler.compileGrammar(spec.ebnf);
  }
}

function remember(key: string, g: xg.CompiledGrammar): void {
  compiled.delete(key);
  compiled.set(key, g);
  const inUse = new Set([...matchers.values()].map((m) => m.key));
  for (const [k, old] of compiled) {
    if (compiled.size <= CACHE_SIZE) break;
    if (inUse.has(k)) continue;
    compiled.delete(k);
    old.dispose();
  }
}

async function maskRow(row: MaskRowRequest, r: number): Promise<number> {
  let m = matchers.get(row.seqId);
  if (!m) {
    const g = compiled.get(row.key);
    if (!g) return ROW_NO_GRAMMAR;
    m = { matcher: await xg.GrammarMatcher.createGrammarMatcher(g, row.stopTokenIds), key: row.key };
    matchers.set(row.seqId, m);
  }
  for (const id of row.accept) if (!m.matcher.acceptToken(id)) return ROW_REJECTED;
  const mask = new Uint32Array((await m.matcher.getNextTokenBitmask()).buffer);
  if (isJson.has(m.key)) for (let w = 0; w < words; w++) mask[w] &= ~controlTokens[w];
  masks.set(mask, r * words);
  return ROW_OK;
}

async function step(n: number, rows: MaskRowRequest[]): Promise<void> {
  const t0 = performance.now();
  for (let r = 0; r < rows.length; r++) {
    try {
      status[r] = await maskRow(rows[r], r);
    } catch {
      status[r] = ROW_REJECTED;
    }
  }
  header[1] = Math.round((performance.now() - t0) * 1000);
  Atomics.store(header, 0, n);
  Atomics.notify(header, 0);
}

// xgrammar reports a bad grammar by printing "[FATAL] file:line: Check failed: (...) is false: why"
// and aborting (a thrown RuntimeError saying only "Aborted()"): the printed reason is what a client
// needs. The WebAssembly module binds console.error when it starts, so the hook is set before that.
let printed: string[] = [];
const consoleError = console.error;
console.error = (...args: unknown[]) => {
  const line = args.map(String).join(" ");
  if (line.includes("[FATAL]")) printed.push(line);
  else consoleError(...args);
};

async function withReason<T>(work: () => Promise<T>): Promise<T> {
  printed = [];
  try {
    return await work();
  } catch (e) {
    const fatal = printed.find((line) => line.includes("[FATAL]"));
    const why = fatal?.replace(/^.*?\[FATAL\][^:]*:\d+:\s*/, "").replace(/^Check failed: \(.*?\) is false:\s*/, "");
    throw new Error(why || (e instanceof Error ? e.message : String(e)));
  }
}

async function handle(msg: GrammarRequest): Promise<void> {
  if (msg.kind === "init") {
    const v = msg.vocab;
    const info = await xg.TokenizerInfo.createTokenizerInfo(v.tokens, v.vocabType, v.prependSpace, v.vocabSize);
    compiler = await xg.GrammarCompiler.createGrammarCompiler(info);
    words = Math.ceil(v.vocabSize / 32);
    controlTokens = controlCharTokens(v);
    header = new Int32Array(msg.shared, 0, HEADER_WORDS);
    status = new Int32Array(msg.shared, HEADER_WORDS * 4, msg.maxRows);
    masks = new Uint32Array(msg.shared, (HEADER_WORDS + msg.maxRows) * 4, msg.maxRows * words);
  } else if (msg.kind === "compile") {
    const t0 = performance.now();
    let error: string | undefined;
    try {
      remember(msg.key, compiled.get(msg.key) ?? (await withReason(() => compileSpec(msg.spec))));
      if (msg.spec.kind === "json_object" || msg.spec.kind === "json_schema") isJson.add(msg.key);
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    self.postMessage({ kind: "compiled", id: msg.id, error, ms: performance.now() - t0 } satisfies GrammarReply);
  } else if (msg.kind === "step") {
    await step(msg.step, msg.rows);
  } else {
    for (const id of msg.seqIds) {
      matchers.get(id)?.matcher.dispose();
      matchers.delete(id);
    }
  }
}

// one message at a time, in order: a step never runs before the compile or init it follows
let queue = Promise.resolve();
self.onmessage = (event: MessageEvent<GrammarRequest>) => {
  queue = queue.then(() => handle(event.data)).catch((e) => console.warn(`grammar thread: ${e}`));
};
