import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChatTemplate, ChatTemplateError, type ChatMessage } from "../../src/tokenizer/chat.ts";
import { TextTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { thrown } from "../helpers/thrown.ts";

const HF = join(import.meta.dir, "../fixtures/hf");
interface ChatCase { messages: ChatMessage[]; add_generation_prompt: boolean; text?: string; ids?: number[]; error?: string }
const chatCases: Record<string, ChatCase[]> = JSON.parse(readFileSync(join(HF, "tokenizer/chat.json"), "utf8"));
const MODELS: Record<string, string> = { llama2: "tiny-llama2", mistral: "tiny-mistral", llama3: "tiny-llama3" };

for (const [name, model] of Object.entries(MODELS)) {
  describe(`${name} chat template matches apply_chat_template`, () => {
    const dir = join(HF, "models", model);
    const template = ChatTemplate.fromModelDir(dir);
    const tok = TextTokenizer.fromModelDir(dir);
    chatCases[name].forEach((c, i) => {
      const roles = c.messages.map((m) => m.role).join(",");
      test(`#${i} ${roles} generation_prompt=${c.add_generation_prompt}`, () => {
        const render = () => template.render(c.messages, { addGenerationPrompt: c.add_generation_prompt });
        if (c.error !== undefined) {
          expect(render).toThrow(ChatTemplateError);
          expect(render).toThrow(c.error);
          return;
        }
        const text = render();
        expect(text).toBe(c.text!);
        // The template already wrote the BOS token, so the text is encoded without adding it again.
        expect(tok.encode(text, { addSpecialTokens: false })).toEqual(c.ids!);
      });
    });
  });
}

describe("ChatTemplate", () => {
  const msgs: ChatMessage[] = [{ role: "user", content: "hi" }];

  test("raise_exception carries the template's message exactly", () => {
    const t = new ChatTemplate({ chat_template: "{{ raise_exception('no ' + messages[0].role + 's here') }}" });
    const err = thrown(() => t.render(msgs, { addGenerationPrompt: false }));
    expect(err).toBeInstanceOf(ChatTemplateError);
    expect((err as Error).message).toBe("no users here");
  });

  test("no chat template: clear error on render", () => {
    const t = new ChatTemplate({ bos_token: "<s>" });
    expect(t.hasTemplate).toBe(false);
    expect(() => t.render(msgs, { addGenerationPrompt: true })).toThrow(/has no chat template/);
  });

  test("a list of named templates: 'default' is used", () => {
    const t = new ChatTemplate({
      chat_template: [
        { name: "tool_use", template: "TOOLS" },
        { name: "default", template: "{{ bos_token }}{{ messages[0].content }}{% if add_generation_prompt %}>{% endif %}" },
      ],
      bos_token: { content: "<B>", special: true },
    });
    expect(t.render(msgs, { addGenerationPrompt: true })).toBe("<B>hi>");
    expect(() => new ChatTemplate({ chat_template: [{ name: "rag", template: "x" }] })).toThrow(/none named "default"/);
  });

  test("variables apply_chat_template passes", () => {
    const t = new ChatTemplate({
      chat_template:
        "{{ eos_token }}|{{ tools is none }}|{{ documents is none }}|{{ range(3) | join(',') }}|" +
        "{{ strftime_now('%Y') | length }}|{{ date_string | default('26 Jul 2024') }}",
      eos_token: "</s>",
    });
    expect(t.render(msgs, { addGenerationPrompt: false })).toBe("</s>|true|true|0,1,2|4|26 Jul 2024");
    expect(t.render(msgs, { addGenerationPrompt: false, extra: { date_string: "1 Jan 2025" } })).toEndWith("|1 Jan 2025");
  });

  test("template syntax and runtime errors", () => {
    expect(() => new ChatTemplate({ chat_template: "{% if %}" })).toThrow(ChatTemplateError);
    const t = new ChatTemplate({ chat_template: "{{ messages[0].content.nope() }}" });
    expect(() => t.render(msgs, { addGenerationPrompt: false })).toThrow(/chat template failed to render/);
  });

  test("chat_template.jinja takes precedence over tokenizer_config.json", () => {
    const dir = mkdtempSync(join(tmpdir(), "chat-"));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: "old", bos_token: "<s>" }));
    writeFileSync(join(dir, "chat_template.jinja"), "{{ bos_token }}new");
    expect(ChatTemplate.fromModelDir(dir).render(msgs, { addGenerationPrompt: false })).toBe("<s>new");
  });
});
