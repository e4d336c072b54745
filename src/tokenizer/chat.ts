import { Environment, Interpreter, Template } from "@huggingface/jinja";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { specialTokenString, type JsonObject } from "./tokenizer.ts";

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

/** The template refused the conversation (`raise_exception`), failed to render, or is absent. */
export class ChatTemplateError extends Error {
  override name = "ChatTemplateError";
}

const SPECIAL_TOKEN_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/** Picks the template HF would use: a string, or the "default" entry of a `[{name, template}]` list. */
function selectTemplate(value: unknown, source: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const entry = value.find((t) => t && typeof t === "object" && (t as JsonObject).name === "default");
    if (!entry || typeof (entry as JsonObject).template !== "string") {
      const names = value.map((t) => JSON.stringify((t as JsonObject)?.name)).join(", ");
      throw new ChatTemplateError(`${source}: chat_template lists named templates (${names}) but none named "default"`);
    }
    return (entry as JsonObject).template as string;
  }
  throw new ChatTemplateError(`${source}: chat_template must be a string or a list of {name, template}`);
}

function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error("range() step must not be zero");
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

function strftimeNow(format: string): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, "0");
  const month = (style: "long" | "short") => d.toLocaleString("en-US", { month: style });
  const day = (style: "long" | "short") => d.toLocaleString("en-US", { weekday: style });
  const map: Record<string, () => string> = {
    Y: () => String(d.getFullYear()), y: () => pad(d.getFullYear() % 100), m: () => pad(d.getMonth() + 1),
    d: () => pad(d.getDate()), b: () => month("short"), B: () => month("long"), a: () => day("short"),
    A: () => day("long"), H: () => pad(d.getHours()), M: () => pad(d.getMinutes()), S: () => pad(d.getSeconds()),
    "%": () => "%",
  };
  return format.replace(/%(.)/g, (all, c: string) => (map[c] ? map[c]() : all));
}

/** A HF chat template, rendered with the variables `apply_chat_template` passes. */
export class ChatTemplate {
  readonly source: string | undefined;
  private readonly template: Template | undefined;
  private readonly specialTokens: Record<string, string | string[] | undefined>;
  private readonly origin: string;

  /** `config` is a parsed tokenizer_config.json; `templateOverride` replaces its chat_template. */
  constructor(config: object, opts: { templateOverride?: string; origin?: string } = {}) {
    const cfg = config as JsonObject;
    this.origin = opts.origin ?? "tokenizer_config.json";
    this.source = opts.templateOverride ?? selectTemplate(cfg.chat_template, this.origin);
    if (this.source !== undefined) {
      try {
        this.template = new Template(this.source);
      } catch (e) {
        throw new ChatTemplateError(`${this.origin}: chat_template does not parse: ${(e as Error).message}`);
      }
    }
    this.specialTokens = {};
    for (const key of SPECIAL_TOKEN_KEYS) this.specialTokens[key] = specialTokenString(cfg[key]);
    const extra = Array.isArray(cfg.additional_special_tokens) ? cfg.additional_special_tokens : [];
    this.specialTokens.additional_special_tokens = extra.map(specialTokenString).filter((t): t is string => t !== undefined);
  }

  /**
   * Reads `dir/tokenizer_config.json`; newer transformers save the template separately as
   * `chat_template.jinja` (or `chat_template.json`), which then takes precedence.
   */
  static fromModelDir(dir: string): ChatTemplate {
    const configPath = join(dir, "tokenizer_config.json");
    const config = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, "utf8")) as JsonObject) : {};
    const jinjaPath = join(dir, "chat_template.jinja");
    if (existsSync(jinjaPath)) {
      return new ChatTemplate(config, { templateOverride: readFileSync(jinjaPath, "utf8"), origin: jinjaPath });
    }
    const jsonPath = join(dir, "chat_template.json");
    if (existsSync(jsonPath)) {
      const t = selectTemplate((JSON.parse(readFileSync(jsonPath, "utf8")) as JsonObject).chat_template, jsonPath);
      return new ChatTemplate(config, { templateOverride: t, origin: jsonPath });
    }
    return new ChatTemplate(config, { origin: configPath });
  }

  get hasTemplate(): boolean {
    return this.template !== undefined;
  }

  /** `extra` adds template variables (e.g. `tools`, `date_string`), as apply_chat_template's kwargs. */
  render(messages: ChatMessage[], opts: { addGenerationPrompt: boolean; extra?: Record<string, unknown> }): string {
    if (!this.template) {
      throw new ChatTemplateError(`this model has no chat template (${this.origin} has no chat_template)`);
    }
    // Template.render() pre-declares a raise_exception that throws a plain Error, which cannot be
    // told apart from other failures and cannot be overridden, so build the environment here.
    const env = new Environment();
    const vars: Record<string, unknown> = {
      true: true, false: false, none: null, True: true, False: false, None: null,
      range,
      strftime_now: strftimeNow,
      raise_exception: (message: unknown) => {
        throw new ChatTemplateError(String(message));
      },
      tools: null,
      documents: null,
      ...this.specialTokens,
      ...opts.extra,
      messages,
      add_generation_prompt: opts.addGenerationPrompt,
    };
    for (const [k, v] of Object.entries(vars)) env.set(k, v);
    try {
      return new Interpreter(env).run(this.template.parsed).value as string;
    } catch (e) {
      if (e instanceof ChatTemplateError) throw e;
      throw new ChatTemplateError(`chat template failed to render: ${(e as Error).message}`);
    }
  }
}
